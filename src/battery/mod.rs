//! The battery as jkmon sees it: the latest cell-info values of one BMS, who it is, and the state
//! of charge jkmon chose to show. Built from protocol types; knows nothing of bytes or transports.
//!
//! Layer 2: may use `protocol`.

pub mod energy;
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

impl Snapshot {
    pub fn new(
        cell_info: CellInfo,
        device_info: Option<DeviceInfo>,
        settings: Option<Settings>,
        estimator: &dyn SocEstimator,
    ) -> Snapshot {
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
