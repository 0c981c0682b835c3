//! The one typed configuration, read once from the environment (after `.env` is loaded) and
//! validated at start-up. A bad value names its variable, the value, and the expected form.

use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::battery::soc::{SocSource, VoltageCurve};
use crate::protocol::{Variant, VariantChoice};
use crate::transport::sim::{Fragmentation, SimConfig};
use crate::transport::TransportKind;

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("{var}=\"{value}\" is not valid: {problem}")]
    Invalid {
        var: &'static str,
        value: String,
        problem: String,
    },
}

/// Every variable jkmon reads so far; `.env.example` documents each.
pub const VARIABLES: &[&str] = &[
    "JK_BMS_TRANSPORT",
    "JK_BMS_VARIANT",
    "SOC_SOURCE",
    "SOC_CURVE",
    "JK_SIM_CELLS",
    "JK_SIM_CAPACITY_AH",
    "JK_SIM_VARIANT",
    "JK_SIM_SEED",
    "JK_SIM_INTERVAL_MS",
    "JK_SIM_PERIOD_SEC",
    "JK_SIM_FRAGMENTATION",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub transport: TransportKind,
    pub variant: VariantChoice,
    pub soc_source: SocSource,
    pub soc_curve: VoltageCurve,
    pub sim: SimConfig,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |var: &'static str| {
            lookup(var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        fn parse<T: FromStr<Err = String>>(var: &'static str, v: &str) -> Result<T, ConfigError> {
            v.parse().map_err(|problem| ConfigError::Invalid {
                var,
                value: v.to_string(),
                problem,
            })
        }
        fn number<T>(
            var: &'static str,
            v: &str,
            range: std::ops::RangeInclusive<T>,
            example: &str,
        ) -> Result<T, ConfigError>
        where
            T: FromStr + PartialOrd + std::fmt::Display + Copy,
        {
            let invalid = |problem: String| ConfigError::Invalid {
                var,
                value: v.to_string(),
                problem,
            };
            let n: T = v
                .parse()
                .map_err(|_| invalid(format!("expected a whole number like {example}")))?;
            if !range.contains(&n) {
                return Err(invalid(format!(
                    "must be between {} and {}",
                    range.start(),
                    range.end()
                )));
            }
            Ok(n)
        }

        let mut sim = SimConfig::default();
        if let Some(v) = get("JK_SIM_CELLS") {
            sim.cells = number("JK_SIM_CELLS", &v, 4u8..=24, "16")?;
        }
        if let Some(v) = get("JK_SIM_CAPACITY_AH") {
            sim.capacity_ah = number("JK_SIM_CAPACITY_AH", &v, 1u32..=10_000, "280")?;
        }
        if let Some(v) = get("JK_SIM_VARIANT") {
            sim.variant = match parse::<VariantChoice>("JK_SIM_VARIANT", &v)? {
                VariantChoice::Fixed(x @ (Variant::Jk02_24s | Variant::Jk02_32s)) => x,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "JK_SIM_VARIANT",
                        value: v,
                        problem: "the simulator speaks jk02_32s or jk02_24s".into(),
                    })
                }
            };
        }
        if let Some(v) = get("JK_SIM_SEED") {
            sim.seed = number("JK_SIM_SEED", &v, 0u64..=u64::MAX, "42")?;
        }
        if let Some(v) = get("JK_SIM_INTERVAL_MS") {
            sim.frame_interval =
                Duration::from_millis(number("JK_SIM_INTERVAL_MS", &v, 10u64..=60_000, "500")?);
        }
        if let Some(v) = get("JK_SIM_PERIOD_SEC") {
            sim.profile_period =
                Duration::from_secs(number("JK_SIM_PERIOD_SEC", &v, 10u64..=604_800, "600")?);
        }
        if let Some(v) = get("JK_SIM_FRAGMENTATION") {
            sim.fragmentation = parse::<Fragmentation>("JK_SIM_FRAGMENTATION", &v)?;
        }
        Ok(Config {
            transport: get("JK_BMS_TRANSPORT")
                .map(|v| parse("JK_BMS_TRANSPORT", &v))
                .transpose()?
                .unwrap_or_default(),
            variant: get("JK_BMS_VARIANT")
                .map(|v| parse("JK_BMS_VARIANT", &v))
                .transpose()?
                .unwrap_or_default(),
            soc_source: get("SOC_SOURCE")
                .map(|v| parse("SOC_SOURCE", &v))
                .transpose()?
                .unwrap_or_default(),
            soc_curve: get("SOC_CURVE")
                .map(|v| parse("SOC_CURVE", &v))
                .transpose()?
                .unwrap_or_default(),
            sim,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.transport, TransportKind::Ble);
        assert_eq!(c.soc_source, SocSource::Curve);
        assert_eq!(c.variant, VariantChoice::Auto);
        assert_eq!(c.sim.cells, 16);
        assert_eq!(c.soc_curve, VoltageCurve::default());
    }

    #[test]
    fn bad_values_name_the_variable_and_the_form() {
        let e = with(&[("JK_SIM_CELLS", "40")]).unwrap_err().to_string();
        assert_eq!(
            e,
            "JK_SIM_CELLS=\"40\" is not valid: must be between 4 and 24"
        );
        let e = with(&[("JK_SIM_CELLS", "many")]).unwrap_err().to_string();
        assert!(e.contains("whole number like 16"), "{e}");
        let e = with(&[("JK_BMS_TRANSPORT", "wifi")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("JK_BMS_TRANSPORT=\"wifi\"") && e.contains("ble, sim"),
            "{e}"
        );
        let e = with(&[("SOC_CURVE", "3.3:50,3.0:10")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("SOC_CURVE=") && e.contains("must increase"),
            "{e}"
        );
        let e = with(&[("JK_SIM_VARIANT", "jk04")]).unwrap_err().to_string();
        assert!(e.contains("jk02_32s or jk02_24s"), "{e}");
    }

    #[test]
    fn values_are_read_and_blank_means_default() {
        let c = with(&[
            ("JK_BMS_TRANSPORT", "sim"),
            ("SOC_SOURCE", "bms"),
            ("JK_SIM_CELLS", " 8 "),
            ("JK_BMS_VARIANT", ""),
        ])
        .unwrap();
        assert_eq!(c.transport, TransportKind::Sim);
        assert_eq!(c.soc_source, SocSource::Bms);
        assert_eq!(c.sim.cells, 8);
        assert_eq!(c.variant, VariantChoice::Auto);
    }
}
