//! The battery as jkmon sees it: the latest cell-info values of one BMS, who it is, and the state
//! of charge jkmon chose to show. Built from protocol types; knows nothing of bytes or transports.
//!
//! Layer 2: may use `protocol`.

pub mod energy;
pub mod link;
pub mod soc;

use crate::protocol::{CellInfo, DeviceInfo, Settings};
pub use soc::{SocEstimator, SocSource, VoltageCurve};

/// One reading of one battery.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub cell_info: CellInfo,
    pub device_info: Option<DeviceInfo>,
    pub settings: Option<Settings>,
    /// The SOC jkmon uses (from the curve or from the BMS, see `soc_source`); `None` when the
    /// chosen source has no value (a JK04 board reports no SOC).
    pub soc_effective_pct: Option<f64>,
    pub soc_source: SocSource,
}

/// Whether to warn of `cleared` now: once a minute for each field, so a BMS that keeps
/// reporting an impossible value (two frames a second) is named without flooding the log.
fn warn_now(cleared: &[crate::protocol::cell_info::Implausible]) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    static LAST: Mutex<Option<HashMap<&'static str, Instant>>> = Mutex::new(None);
    let Ok(mut last) = LAST.lock() else {
        return true;
    };
    let last = last.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    let mut any = false;
    for c in cleared {
        let due = last
            .get(c.field)
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(60));
        if due {
            last.insert(c.field, now);
            any = true;
        }
    }
    any
}

impl Snapshot {
    /// The snapshot of a decoded frame; values no JK BMS can report are unknown in it (and
    /// named in a warning, at most once a minute per value).
    pub fn new(
        mut cell_info: CellInfo,
        device_info: Option<DeviceInfo>,
        settings: Option<Settings>,
        estimator: &dyn SocEstimator,
    ) -> Snapshot {
        let cleared = cell_info.drop_implausible();
        if !cleared.is_empty() && warn_now(&cleared) {
            let named: Vec<String> = cleared.iter().map(ToString::to_string).collect();
            tracing::warn!(
                "BMS: {} value(s) outside what a JK BMS can report, taken as not reported: {}",
                named.len(),
                named.join(", ")
            );
        }
        // the last values only where this board's firmware fills them
        cell_info.keep_what_the_firmware_fills(
            device_info.as_ref().map(|d| d.model.as_str()),
            device_info.as_ref().map(|d| d.software_version.as_str()),
        );
        Snapshot {
            soc_effective_pct: estimator.estimate_pct(&cell_info),
            soc_source: estimator.source(),
            cell_info,
            device_info,
            settings,
        }
    }

    /// The BMS's own SOC, whatever the chosen source.
    pub fn bms_soc_pct(&self) -> Option<u8> {
        self.cell_info.soc_pct
    }
}
