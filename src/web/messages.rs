//! What jkmon's API says, as types: the handlers answer with them and jkmon's own clients
//! (`jkmon set`, `jkmon healthcheck`) read them back, so the two sides cannot drift apart. The
//! query strings are typed too; their values stay text so a refusal can quote what was sent.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::energy::{EnergyDay, EnergyMonth, EnergySum};

/// `{"error": "…"}`: every refusal of the API, with the words that name the fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// `GET /api/v1/health`: `{"status": "ok", "batteries": 2}` (200), or `{"status": "unhealthy",
/// "problems": ["…"]}` (503).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Health {
    Ok { batteries: usize },
    Unhealthy { problems: Vec<String> },
}

/// `GET /api/v1/energy` (`by=day`, the default): energy per local day, oldest first, and their
/// sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyAnswer {
    pub generated_at: DateTime<Utc>,
    pub days: Vec<EnergyDay>,
    pub total: EnergySum,
}

/// `GET /api/v1/energy?by=month`: energy per local month, oldest first (this month so far),
/// and their sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyMonthsAnswer {
    pub generated_at: DateTime<Utc>,
    pub months: Vec<EnergyMonth>,
    pub total: EnergySum,
}

/// `?by=day&days=N` (N days, default 7) or `?by=month&months=N` (N months, default 12) of
/// `/api/v1/energy`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EnergyQuery {
    pub by: Option<String>,
    pub days: Option<String>,
    pub months: Option<String>,
}

/// `POST /api/v1/batteries/{n}/switches` as JSON: `{"switch": "charging", "on": false}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchRequest {
    pub switch: String,
    pub on: bool,
}

/// The answer to a [`SwitchRequest`]: what was asked, of which battery, and whether the BMS
/// confirmed it (`error` says why not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchAnswer {
    pub battery: String,
    pub position: usize,
    pub switch: String,
    pub on: bool,
    pub confirmed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/v1/history?battery=&from=&to=&bucket=` (every part optional).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HistoryQuery {
    /// Battery numbers separated by commas; empty or absent: every battery.
    pub battery: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Seconds per point.
    pub bucket: Option<String>,
}

/// `?days=` of `/api/v1/energy` and of the Python monitor's `/history`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DaysQuery {
    pub days: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reads_as_the_monitors_scripts_expect() {
        let ok = serde_json::to_value(Health::Ok { batteries: 2 }).unwrap();
        assert_eq!(ok, serde_json::json!({"status": "ok", "batteries": 2}));
        let bad: Health =
            serde_json::from_str(r#"{"status": "unhealthy", "problems": ["a", "b"]}"#).unwrap();
        assert_eq!(
            bad,
            Health::Unhealthy {
                problems: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn a_confirmed_switch_answer_carries_no_error_key() {
        let answer = SwitchAnswer {
            battery: "Pack".into(),
            position: 1,
            switch: "charging".into(),
            on: false,
            confirmed: true,
            error: None,
        };
        let v = serde_json::to_value(&answer).unwrap();
        assert!(v.get("error").is_none(), "{v}");
        assert_eq!(serde_json::from_value::<SwitchAnswer>(v).unwrap(), answer);
    }
}
