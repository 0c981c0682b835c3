//! What the views show: a battery, the inverter, the bank and the status, as plain data.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::battery::link::State;
use crate::report::json::SnapshotJson;
use crate::store::energy::EnergyView;
use crate::store::poller::PollerView;

/// One battery as the views show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatteryView {
    pub position: usize,
    pub name: String,
    pub address: Option<String>,
    pub state: State,
    pub state_detail: Option<String>,
    pub online: bool,
    /// When the latest snapshot was taken, and how long ago.
    pub taken_at: Option<DateTime<Utc>>,
    pub age_s: Option<f64>,
    pub model: Option<String>,
    pub hardware_version: Option<String>,
    pub software_version: Option<String>,
    pub serial_number: Option<String>,
    /// The snapshot of `jkmon read --json`, read back as its type.
    pub snapshot: Option<SnapshotJson>,
    /// Energy in and out, stored energy and time left; `None` for a battery never read.
    pub energy: Option<EnergyView>,
    /// The newest switch writes (JK_BMS_CONTROL), newest first.
    pub switch_writes: Vec<crate::store::switches::SwitchWriteView>,
}

impl BatteryView {
    /// Battery `position` called `name`, online with [`SnapshotJson::example`]'s reading taken
    /// a second ago: the start of every test's battery (set what the test is about).
    pub fn example(position: usize, name: &str) -> BatteryView {
        BatteryView {
            position,
            name: name.into(),
            address: None,
            state: State::Streaming,
            state_detail: None,
            online: true,
            taken_at: Some(Utc::now()),
            age_s: Some(1.0),
            model: None,
            hardware_version: None,
            software_version: None,
            serial_number: None,
            snapshot: Some(SnapshotJson::example()),
            energy: None,
            switch_writes: Vec::new(),
        }
    }
}

/// Switch writes a battery card shows.
pub const SWITCH_WRITES_SHOWN: usize = 5;

/// The latest `readings` row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InverterView {
    pub id: i64,
    pub created_at: String,
    pub age_s: Option<f64>,
    /// `false` for jkmon's own rows and rows with no inverter key: "no inverter data", never
    /// an outage.
    pub has_inverter_data: bool,
    /// Older than three `POLL_INTERVAL`s: the program that writes the rows has stopped, and
    /// the row says nothing of now.
    pub stale: bool,
    pub error: Option<String>,
    /// The keys as the inverter's poller wrote them (any program may write this table, so
    /// its payload stays a JSON object; [`InverterView::text`] and [`InverterView::number`]
    /// read one key).
    pub payload: Option<Map<String, Value>>,
}

pub use crate::inverter::payload::{Grid, GRID_PRESENT_V};

impl InverterView {
    /// A key's text, `None` where it is missing, not text, or the poller's `N/A`.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.payload
            .as_ref()?
            .get(key)?
            .as_str()
            .filter(|v| *v != "N/A")
    }

    /// A key as a number, whether the poller wrote it as text (`"231.4"`) or as a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.payload.as_ref()?.get(key)? {
            Value::String(s) => s.trim().parse::<f64>().ok(),
            other => other.as_f64(),
        }
    }

    /// The grid's state by the one rule ([`crate::inverter::payload::grid`]): unknown for a
    /// row without inverter data, an error row, a stale row or one without a grid voltage,
    /// never an outage.
    pub fn grid(&self) -> Grid {
        if !self.has_inverter_data || self.error.is_some() || self.stale {
            return Grid::Unknown;
        }
        let mode = self
            .text("status_text")
            .and_then(crate::inverter::payload::mode_of_status_text);
        crate::inverter::payload::grid(mode, self.number("grid_voltage"))
    }
}

/// Several batteries as one bank.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BankView {
    pub batteries_online: usize,
    pub current_a: f64,
    pub power_w: f64,
    /// Weighted by each battery's full-charge capacity (equal weights where it is unknown).
    pub soc_pct: Option<f64>,
    /// The batteries' energy summed; time left from the sums.
    pub energy: EnergyView,
}

/// In JSON also `grid` (`up`, `down`, `unknown`: [`StatusView::grid`]), so the dashboard draws
/// the grid with the rule the bot and the alerts use.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusView {
    pub generated_at: DateTime<Utc>,
    pub batteries: Vec<BatteryView>,
    /// Only with two or more batteries.
    pub bank: Option<BankView>,
    pub inverter: Option<InverterView>,
    /// jkmon's own inverter poller, where it polls the inverter.
    pub poller: Option<PollerView>,
}

impl Serialize for StatusView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("StatusView", 6)?;
        s.serialize_field("generated_at", &self.generated_at)?;
        s.serialize_field("batteries", &self.batteries)?;
        s.serialize_field("bank", &self.bank)?;
        s.serialize_field("inverter", &self.inverter)?;
        s.serialize_field("inverter_poller", &self.poller)?;
        s.serialize_field("grid", &self.grid())?;
        s.end()
    }
}

impl StatusView {
    /// The grid as jkmon's own poller heard it from the inverter at its last poll (unknown
    /// while it is not online, or where that poll did not read the grid voltage), else as
    /// the latest `readings` row tells; unknown without either.
    pub fn grid(&self) -> Grid {
        match &self.poller {
            Some(p) => p.grid,
            None => self
                .inverter
                .as_ref()
                .map_or(Grid::Unknown, InverterView::grid),
        }
    }
}

/// Inverter keys: any one of them makes a row an inverter reading.
pub const INVERTER_KEYS: [&str; 8] = [
    "grid_voltage",
    "grid_power",
    "ac_output_voltage",
    "ac_output_power",
    "ac_output_freq",
    "pv_input_power",
    "status_text",
    "battery_charge_power",
];
