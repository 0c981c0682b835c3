//! State of charge, pluggable: a voltage curve on the average cell voltage, or the BMS's own
//! coulomb counter. `SOC_SOURCE=curve|bms`, `SOC_CURVE="2.50:0,3.30:50,3.65:100"`.

use std::fmt;
use std::str::FromStr;

use crate::protocol::CellInfo;

/// Where the SOC jkmon shows comes from (`curve` or `bms` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocSource {
    #[default]
    Curve,
    Bms,
}

impl SocSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SocSource::Curve => "curve",
            SocSource::Bms => "bms",
        }
    }
}

impl FromStr for SocSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "curve" => Ok(SocSource::Curve),
            "bms" => Ok(SocSource::Bms),
            other => Err(format!(
                "\"{other}\" is not a SOC source (expected curve or bms)"
            )),
        }
    }
}

impl fmt::Display for SocSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Computes a state of charge from a cell-info reading.
pub trait SocEstimator: Send + Sync {
    fn estimate_pct(&self, cells: &CellInfo) -> Option<f64>;
    fn source(&self) -> SocSource;
}

/// The BMS's own SOC byte.
#[derive(Debug, Clone, Copy, Default)]
pub struct BmsSoc;

impl SocEstimator for BmsSoc {
    fn estimate_pct(&self, cells: &CellInfo) -> Option<f64> {
        cells.soc_pct.map(f64::from)
    }
    fn source(&self) -> SocSource {
        SocSource::Bms
    }
}

/// Piecewise-linear SOC over the average cell voltage, clamped to 0-100 %.
#[derive(Debug, Clone, PartialEq)]
pub struct VoltageCurve {
    /// (average cell voltage in mV, SOC in %), voltages strictly increasing.
    points: Vec<(u32, f64)>,
}

/// The LiFePO4 default: 2.50 V → 0 %, 3.30 V → 50 %, 3.65 V → 100 %.
pub const DEFAULT_CURVE: &str = "2.50:0,3.30:50,3.65:100";

impl Default for VoltageCurve {
    fn default() -> Self {
        DEFAULT_CURVE.parse().expect("the default curve is valid")
    }
}

impl VoltageCurve {
    pub fn points(&self) -> &[(u32, f64)] {
        &self.points
    }

    /// SOC for an average cell voltage in µV.
    pub fn soc_at_uv(&self, avg_uv: u32) -> f64 {
        let v = f64::from(avg_uv) / 1000.0;
        let first = self.points[0];
        let last = self.points[self.points.len() - 1];
        if v <= f64::from(first.0) {
            return first.1.clamp(0.0, 100.0);
        }
        if v >= f64::from(last.0) {
            return last.1.clamp(0.0, 100.0);
        }
        for w in self.points.windows(2) {
            let ((v0, s0), (v1, s1)) = (w[0], w[1]);
            let (v0, v1) = (f64::from(v0), f64::from(v1));
            if v <= v1 {
                return (s0 + (s1 - s0) * (v - v0) / (v1 - v0)).clamp(0.0, 100.0);
            }
        }
        last.1
    }
}

impl FromStr for VoltageCurve {
    type Err = String;
    /// `"2.50:0,3.30:50,3.65:100"`: volts per cell, colon, percent; at least two points,
    /// voltages strictly increasing, percentages within 0-100.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let form = "expected points like \"2.50:0,3.30:50,3.65:100\" (cell volts:percent)";
        let mut points = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (v, p) = part
                .split_once(':')
                .ok_or_else(|| format!("\"{part}\" has no ':'; {form}"))?;
            let volts: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("\"{v}\" in \"{part}\" is not a voltage; {form}"))?;
            let pct: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("\"{p}\" in \"{part}\" is not a percentage; {form}"))?;
            if !(0.5..=5.0).contains(&volts) {
                return Err(format!(
                    "{volts} V in \"{part}\" is not a cell voltage (0.5-5.0 V)"
                ));
            }
            if !(0.0..=100.0).contains(&pct) {
                return Err(format!("{pct} % in \"{part}\" is outside 0-100 %"));
            }
            let mv = (volts * 1000.0).round() as u32;
            if let Some(&(prev, _)) = points.last() {
                if mv <= prev {
                    return Err(format!(
                        "voltages must increase: {volts} V in \"{part}\" follows {:.3} V",
                        f64::from(prev) / 1000.0
                    ));
                }
            }
            points.push((mv, pct));
        }
        if points.len() < 2 {
            return Err(format!("a curve needs at least two points; {form}"));
        }
        Ok(VoltageCurve { points })
    }
}

impl SocEstimator for VoltageCurve {
    fn estimate_pct(&self, cells: &CellInfo) -> Option<f64> {
        cells.stats().map(|s| self.soc_at_uv(s.avg_uv))
    }
    fn source(&self) -> SocSource {
        SocSource::Curve
    }
}

/// The estimator for a configured source.
pub fn estimator(source: SocSource, curve: &VoltageCurve) -> Box<dyn SocEstimator> {
    match source {
        SocSource::Curve => Box::new(curve.clone()),
        SocSource::Bms => Box::new(BmsSoc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_lifepo4_curve() {
        let c = VoltageCurve::default();
        assert_eq!(c.soc_at_uv(2_500_000), 0.0);
        assert_eq!(c.soc_at_uv(3_300_000), 50.0);
        assert_eq!(c.soc_at_uv(3_650_000), 100.0);
        assert_eq!(c.soc_at_uv(2_000_000), 0.0, "clamped below");
        assert_eq!(c.soc_at_uv(4_000_000), 100.0, "clamped above");
        assert!((c.soc_at_uv(2_900_000) - 25.0).abs() < 1e-9);
        assert!((c.soc_at_uv(3_475_000) - 75.0).abs() < 1e-9);
    }

    #[test]
    fn bad_curves_name_the_problem() {
        let e = "3.3:50,3.2:60".parse::<VoltageCurve>().unwrap_err();
        assert!(e.contains("must increase"), "{e}");
        let e = "2.5:0,3.6:120".parse::<VoltageCurve>().unwrap_err();
        assert!(e.contains("120 %"), "{e}");
        let e = "2.5:0".parse::<VoltageCurve>().unwrap_err();
        assert!(e.contains("at least two"), "{e}");
        let e = "2.5;0,3:1".parse::<VoltageCurve>().unwrap_err();
        assert!(e.contains("no ':'"), "{e}");
        let e = "abc:0,3:1".parse::<VoltageCurve>().unwrap_err();
        assert!(e.contains("\"abc\""), "{e}");
        assert_eq!(
            " 2.8:10 , 3.4:90 "
                .parse::<VoltageCurve>()
                .unwrap()
                .points()
                .len(),
            2
        );
    }

    #[test]
    fn sources_parse() {
        assert_eq!("BMS".parse::<SocSource>(), Ok(SocSource::Bms));
        assert!("coulomb"
            .parse::<SocSource>()
            .unwrap_err()
            .contains("curve or bms"));
    }
}
