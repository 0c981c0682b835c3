//! BMS history: one row per store interval with every snapshot of the interval folded in, then
//! 5-minute and hourly rows made from those, each tier kept for its own number of days.
//!
//! A row holds the average and the extremes of its samples, so a chart over a year still shows
//! the deepest discharge and the highest cell. Folding is the same operation at every level
//! (snapshots into an interval row, interval rows into 5-minute rows, 5-minute rows into hourly
//! ones), done by [`Bucket`]; the SQL here only moves rows.

use rusqlite::{named_params, Connection, OptionalExtension, Row};

use crate::battery::Snapshot;

/// The tiers: `(bucket_s, made from bucket_s)`. 0 is the store-interval tier.
pub const TIERS: [(i64, i64); 2] = [(300, 0), (3_600, 300)];

/// How many days each tier is kept (0 = for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `HISTORY_RAW_DAYS`: one row per store interval (`JK_BMS_POLL_INTERVAL`).
    pub raw_days: u32,
    /// `HISTORY_5MIN_DAYS`.
    pub five_min_days: u32,
    /// `HISTORY_HOURLY_DAYS`.
    pub hourly_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw_days: 7,
            five_min_days: 90,
            hourly_days: 3_650,
        }
    }
}

impl Retention {
    fn days_for(&self, bucket_s: i64) -> u32 {
        match bucket_s {
            0 => self.raw_days,
            300 => self.five_min_days,
            _ => self.hourly_days,
        }
    }
}

/// Average and extremes of one quantity; `n` counts the samples that had it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stat {
    pub n: u32,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    pub fn add(&mut self, v: f64) {
        self.fold(1, v, v, v);
    }

    /// Folds in `n` samples with this average and these extremes.
    pub fn fold(&mut self, n: u32, avg: f64, min: f64, max: f64) {
        if n == 0 {
            return;
        }
        if self.n == 0 {
            self.min = min;
            self.max = max;
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
        self.n += n;
        self.sum += avg * f64::from(n);
    }

    pub fn avg(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / f64::from(self.n))
    }
    fn min(&self) -> Option<f64> {
        (self.n > 0).then_some(self.min)
    }
    fn max(&self) -> Option<f64> {
        (self.n > 0).then_some(self.max)
    }
}

/// Average, minimum and maximum of one series in one bucket.
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq)]
pub struct Range {
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

/// The samples of one bucket, being folded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bucket {
    pub samples: u32,
    pub voltage_mv: Stat,
    pub current_ma: Stat,
    pub power_w: Stat,
    pub soc_pct: Stat,
    pub remaining_mah: Stat,
    /// MOSFET, T1 … T5, in 0.1 °C.
    pub temps_dc: [Stat; 6],
    /// Over every present sensor.
    pub temp_dc: Stat,
    /// min: the lowest cell seen; max: the highest.
    pub cell_uv: Stat,
    pub cell_delta_uv: Stat,
    /// Per cell, cell 1 first.
    pub cells_uv: Vec<Stat>,
}

impl Bucket {
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    pub fn add(&mut self, s: &Snapshot) {
        let c = &s.cell_info;
        self.samples += 1;
        self.voltage_mv.add(f64::from(c.total_voltage_mv));
        if let Some(ma) = c.current_ma {
            self.current_ma.add(f64::from(ma));
        }
        if let Some(mw) = c.power_mw() {
            self.power_w.add(mw as f64 / 1000.0);
        }
        if let Some(p) = s.soc_effective_pct {
            self.soc_pct.add(p);
        }
        if let Some(mah) = c.remaining_capacity_mah {
            self.remaining_mah.add(f64::from(mah));
        }
        let t = &c.temperatures;
        for (i, dc) in std::iter::once(t.mos_dc)
            .chain(t.sensors_dc.iter().copied())
            .enumerate()
        {
            if let Some(dc) = dc {
                self.temps_dc[i].add(f64::from(dc));
                self.temp_dc.add(f64::from(dc));
            }
        }
        if let Some(st) = c.stats() {
            self.cell_uv.fold(
                1,
                f64::from(st.avg_uv),
                f64::from(st.min_uv),
                f64::from(st.max_uv),
            );
            self.cell_delta_uv.add(f64::from(st.delta_uv));
        }
        if self.cells_uv.len() < c.cell_voltages_uv.len() {
            self.cells_uv
                .resize(c.cell_voltages_uv.len(), Stat::default());
        }
        for (stat, uv) in self.cells_uv.iter_mut().zip(&c.cell_voltages_uv) {
            stat.add(f64::from(*uv));
        }
    }

    /// Folds a stored row (of a finer tier) in.
    pub fn add_row(&mut self, r: &HistoryRow) {
        let n = r.samples;
        self.samples += n;
        let fold = |stat: &mut Stat, avg: Option<f64>, min: Option<f64>, max: Option<f64>| {
            if let Some(avg) = avg {
                stat.fold(n, avg, min.unwrap_or(avg), max.unwrap_or(avg));
            }
        };
        let f = |v: Option<i64>| v.map(|v| v as f64);
        fold(
            &mut self.voltage_mv,
            Some(r.voltage_mv as f64),
            Some(r.voltage_min_mv as f64),
            Some(r.voltage_max_mv as f64),
        );
        fold(
            &mut self.current_ma,
            f(r.current_ma),
            f(r.current_min_ma),
            f(r.current_max_ma),
        );
        fold(&mut self.power_w, r.power_w, r.power_min_w, r.power_max_w);
        fold(&mut self.soc_pct, r.soc_pct, r.soc_min_pct, r.soc_max_pct);
        fold(&mut self.remaining_mah, f(r.remaining_mah), None, None);
        for (stat, dc) in self.temps_dc.iter_mut().zip(r.temps_dc) {
            fold(stat, f(dc), None, None);
        }
        if let (Some(min), Some(max)) = (r.temp_min_dc, r.temp_max_dc) {
            // only the extremes matter for the all-sensor statistic
            self.temp_dc
                .fold(n, (min + max) as f64 / 2.0, min as f64, max as f64);
        }
        if let (Some(min), Some(max)) = (r.cell_min_uv, r.cell_max_uv) {
            self.cell_uv
                .fold(n, (min + max) as f64 / 2.0, min as f64, max as f64);
        }
        fold(
            &mut self.cell_delta_uv,
            f(r.cell_delta_uv),
            None,
            f(r.cell_delta_max_uv),
        );
        if self.cells_uv.len() < r.cells_uv.len() {
            self.cells_uv.resize(r.cells_uv.len(), Stat::default());
        }
        for (stat, uv) in self.cells_uv.iter_mut().zip(&r.cells_uv) {
            stat.fold(n, f64::from(*uv), f64::from(*uv), f64::from(*uv));
        }
    }

    /// The row this bucket becomes.
    pub fn to_row(&self, device_id: i64, bucket_s: i64, ts_ms: i64) -> HistoryRow {
        let i = |v: Option<f64>| v.map(|v| v.round() as i64);
        HistoryRow {
            device_id,
            bucket_s,
            ts_ms,
            samples: self.samples,
            voltage_mv: i(self.voltage_mv.avg()).unwrap_or(0),
            voltage_min_mv: i(self.voltage_mv.min()).unwrap_or(0),
            voltage_max_mv: i(self.voltage_mv.max()).unwrap_or(0),
            current_ma: i(self.current_ma.avg()),
            current_min_ma: i(self.current_ma.min()),
            current_max_ma: i(self.current_ma.max()),
            power_w: self.power_w.avg().map(|w| (w * 10.0).round() / 10.0),
            power_min_w: self.power_w.min(),
            power_max_w: self.power_w.max(),
            soc_pct: self.soc_pct.avg().map(|p| (p * 10.0).round() / 10.0),
            soc_min_pct: self.soc_pct.min(),
            soc_max_pct: self.soc_pct.max(),
            remaining_mah: i(self.remaining_mah.avg()),
            temps_dc: self.temps_dc.map(|t| i(t.avg())),
            temp_min_dc: i(self.temp_dc.min()),
            temp_max_dc: i(self.temp_dc.max()),
            cell_min_uv: i(self.cell_uv.min()),
            cell_max_uv: i(self.cell_uv.max()),
            cell_delta_uv: i(self.cell_delta_uv.avg()),
            cell_delta_max_uv: i(self.cell_delta_uv.max()),
            cells_uv: self
                .cells_uv
                .iter()
                .map(|s| s.avg().map(|v| v.round() as u32).unwrap_or(0))
                .collect(),
        }
    }
}

/// One row of `bms_history` (see `migrations/0002_bms.sql`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub device_id: i64,
    pub bucket_s: i64,
    pub ts_ms: i64,
    pub samples: u32,
    pub voltage_mv: i64,
    pub voltage_min_mv: i64,
    pub voltage_max_mv: i64,
    pub current_ma: Option<i64>,
    pub current_min_ma: Option<i64>,
    pub current_max_ma: Option<i64>,
    pub power_w: Option<f64>,
    pub power_min_w: Option<f64>,
    pub power_max_w: Option<f64>,
    pub soc_pct: Option<f64>,
    pub soc_min_pct: Option<f64>,
    pub soc_max_pct: Option<f64>,
    pub remaining_mah: Option<i64>,
    /// MOSFET, T1 … T5.
    pub temps_dc: [Option<i64>; 6],
    pub temp_min_dc: Option<i64>,
    pub temp_max_dc: Option<i64>,
    pub cell_min_uv: Option<i64>,
    pub cell_max_uv: Option<i64>,
    pub cell_delta_uv: Option<i64>,
    pub cell_delta_max_uv: Option<i64>,
    pub cells_uv: Vec<u32>,
}

const COLUMNS: &str = "device_id, bucket_s, ts_ms, samples, voltage_mv, voltage_min_mv, \
    voltage_max_mv, current_ma, current_min_ma, current_max_ma, power_w, power_min_w, \
    power_max_w, soc_pct, soc_min_pct, soc_max_pct, remaining_mah, temp_mos_dc, temp_t1_dc, \
    temp_t2_dc, temp_t3_dc, temp_t4_dc, temp_t5_dc, temp_min_dc, temp_max_dc, cell_min_uv, \
    cell_max_uv, cell_delta_uv, cell_delta_max_uv, cells_uv";

fn encode_cells(cells: &[u32]) -> Vec<u8> {
    cells.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn decode_cells(blob: &[u8]) -> Vec<u32> {
    blob.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl HistoryRow {
    pub fn insert(&self, conn: &Connection) -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT OR REPLACE INTO bms_history ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
             ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, \
             ?25, ?26, ?27, ?28, ?29, ?30)"
        ))?;
        let t = &self.temps_dc;
        stmt.execute(rusqlite::params![
            self.device_id,
            self.bucket_s,
            self.ts_ms,
            self.samples,
            self.voltage_mv,
            self.voltage_min_mv,
            self.voltage_max_mv,
            self.current_ma,
            self.current_min_ma,
            self.current_max_ma,
            self.power_w,
            self.power_min_w,
            self.power_max_w,
            self.soc_pct,
            self.soc_min_pct,
            self.soc_max_pct,
            self.remaining_mah,
            t[0],
            t[1],
            t[2],
            t[3],
            t[4],
            t[5],
            self.temp_min_dc,
            self.temp_max_dc,
            self.cell_min_uv,
            self.cell_max_uv,
            self.cell_delta_uv,
            self.cell_delta_max_uv,
            encode_cells(&self.cells_uv),
        ])?;
        Ok(())
    }

    fn from_sql(r: &Row) -> rusqlite::Result<HistoryRow> {
        let blob: Option<Vec<u8>> = r.get(29)?;
        Ok(HistoryRow {
            device_id: r.get(0)?,
            bucket_s: r.get(1)?,
            ts_ms: r.get(2)?,
            samples: r.get(3)?,
            voltage_mv: r.get(4)?,
            voltage_min_mv: r.get(5)?,
            voltage_max_mv: r.get(6)?,
            current_ma: r.get(7)?,
            current_min_ma: r.get(8)?,
            current_max_ma: r.get(9)?,
            power_w: r.get(10)?,
            power_min_w: r.get(11)?,
            power_max_w: r.get(12)?,
            soc_pct: r.get(13)?,
            soc_min_pct: r.get(14)?,
            soc_max_pct: r.get(15)?,
            remaining_mah: r.get(16)?,
            temps_dc: [
                r.get(17)?,
                r.get(18)?,
                r.get(19)?,
                r.get(20)?,
                r.get(21)?,
                r.get(22)?,
            ],
            temp_min_dc: r.get(23)?,
            temp_max_dc: r.get(24)?,
            cell_min_uv: r.get(25)?,
            cell_max_uv: r.get(26)?,
            cell_delta_uv: r.get(27)?,
            cell_delta_max_uv: r.get(28)?,
            cells_uv: blob.as_deref().map(decode_cells).unwrap_or_default(),
        })
    }
}

/// The rows of one device and tier in `[from_ms, to_ms)`, oldest first.
pub fn rows(
    conn: &Connection,
    device_id: i64,
    bucket_s: i64,
    from_ms: i64,
    to_ms: i64,
) -> rusqlite::Result<Vec<HistoryRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM bms_history WHERE device_id = :device AND bucket_s = :bucket \
         AND ts_ms >= :from AND ts_ms < :to ORDER BY ts_ms"
    ))?;
    let rows = stmt.query_map(
        named_params! {":device": device_id, ":bucket": bucket_s, ":from": from_ms, ":to": to_ms},
        HistoryRow::from_sql,
    )?;
    rows.collect()
}

/// What [`downsample`] and [`expire`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Downsampled BMS history rows made.
    pub rows_made: usize,
    pub rows_deleted: usize,
    /// Inverter chart buckets made (see [`super::inverter`]).
    pub inverter_buckets: usize,
    /// More inverter rows wait to be aggregated: run again soon.
    pub more: bool,
}

/// Makes every complete 5-minute and hourly bucket that is not made yet (a bucket is complete
/// when its end is at or before `now_ms`). Run it before [`expire`], so rows are folded before
/// they go.
pub fn downsample(conn: &Connection, now_ms: i64) -> rusqlite::Result<usize> {
    let mut made = 0;
    for (bucket_s, source_s) in TIERS {
        let width_ms = bucket_s * 1000;
        let end_ms = now_ms.div_euclid(width_ms) * width_ms;
        let devices: Vec<i64> = conn
            .prepare_cached("SELECT DISTINCT device_id FROM bms_history WHERE bucket_s = ?1")?
            .query_map([source_s], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for device in devices {
            let last: Option<i64> = conn
                .query_row(
                    "SELECT MAX(ts_ms) FROM bms_history WHERE device_id = ?1 AND bucket_s = ?2",
                    [device, bucket_s],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            let from_ms = last.map_or(i64::MIN, |t| t + width_ms);
            let mut current: Option<(i64, Bucket)> = None;
            for row in rows(conn, device, source_s, from_ms, end_ms)? {
                let start = row.ts_ms.div_euclid(width_ms) * width_ms;
                if current.as_ref().is_some_and(|(s, _)| *s != start) {
                    let (s, b) = current.take().expect("checked");
                    b.to_row(device, bucket_s, s).insert(conn)?;
                    made += 1;
                }
                current
                    .get_or_insert_with(|| (start, Bucket::default()))
                    .1
                    .add_row(&row);
            }
            if let Some((s, b)) = current {
                b.to_row(device, bucket_s, s).insert(conn)?;
                made += 1;
            }
        }
    }
    Ok(made)
}

/// Deletes the rows each tier no longer keeps.
pub fn expire(conn: &Connection, now_ms: i64, retention: &Retention) -> rusqlite::Result<usize> {
    let mut deleted = 0;
    for bucket_s in [0, 300, 3_600] {
        let days = retention.days_for(bucket_s);
        if days == 0 {
            continue;
        }
        let cutoff = now_ms - i64::from(days) * 86_400_000;
        deleted += conn
            .prepare_cached("DELETE FROM bms_history WHERE bucket_s = ?1 AND ts_ms < ?2")?
            .execute([bucket_s, cutoff])?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_folds_weighted_averages_and_keeps_extremes() {
        let mut a = Stat::default();
        a.add(10.0);
        a.add(20.0);
        let mut b = Stat::default();
        b.fold(2, a.avg().unwrap(), a.min, a.max);
        b.fold(1, 60.0, 60.0, 60.0);
        assert_eq!(b.n, 3);
        assert_eq!(b.avg(), Some(30.0));
        assert_eq!((b.min, b.max), (10.0, 60.0));
        assert_eq!(Stat::default().avg(), None);
    }

    #[test]
    fn cells_round_trip_through_the_blob() {
        let cells = vec![3_287_000, 0, u32::MAX, 3_301_500];
        assert_eq!(decode_cells(&encode_cells(&cells)), cells);
        assert!(
            decode_cells(&[1, 2, 3]).is_empty(),
            "a short blob is no cell"
        );
    }
}
