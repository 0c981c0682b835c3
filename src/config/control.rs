//! `JK_BMS_CONTROL`: whether jkmon may switch a BMS (charging, discharging, balancer, heater).
//! Off unless the owner turns it on: `on` for every battery, or the batteries it is for, by
//! position or by name (`1,3`, `Garage`).

use super::env::{invalid, Env};
use super::ConfigError;

/// Which batteries jkmon may switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Control {
    /// None (the default).
    #[default]
    Off,
    /// Every battery.
    On,
    /// These, by 1-based position or by name.
    Only(Vec<String>),
}

impl Control {
    /// Whether battery `position` (1-based) named `name` may be switched.
    pub fn allows(&self, position: usize, name: &str) -> bool {
        match self {
            Control::Off => false,
            Control::On => true,
            Control::Only(list) => list
                .iter()
                .any(|b| b == &position.to_string() || b.eq_ignore_ascii_case(name)),
        }
    }

    /// The entries of a list that name no configured battery (`names`, battery 1 first).
    pub fn unknown<'a>(&'a self, names: &[String]) -> Vec<&'a str> {
        let Control::Only(list) = self else {
            return Vec::new();
        };
        list.iter()
            .filter(|b| {
                let by_position = b
                    .parse::<usize>()
                    .is_ok_and(|p| (1..=names.len()).contains(&p));
                !by_position && !names.iter().any(|n| n.eq_ignore_ascii_case(b))
            })
            .map(String::as_str)
            .collect()
    }
}

/// Reads `JK_BMS_CONTROL`.
pub fn control(env: &Env) -> Result<Control, ConfigError> {
    let Some(raw) = env.get("JK_BMS_CONTROL") else {
        return Ok(Control::Off);
    };
    Ok(match raw.trim().to_ascii_lowercase().as_str() {
        "off" | "no" | "false" | "0" => Control::Off,
        "on" | "yes" | "true" | "all" => Control::On,
        _ => {
            let list: Vec<String> = raw
                .split([',', ';'])
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(str::to_string)
                .collect();
            if list.is_empty() {
                return Err(invalid(
                    "JK_BMS_CONTROL",
                    &raw,
                    "expected off, on, or the batteries to switch by position or name (1,3 or Garage)",
                ));
            }
            Control::Only(list)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(value: Option<&str>) -> Result<Control, ConfigError> {
        let map: HashMap<String, String> = value
            .map(|v| [("JK_BMS_CONTROL".to_string(), v.to_string())].into())
            .unwrap_or_default();
        let lookup = move |k: &str| map.get(k).cloned();
        control(&Env::new(&lookup))
    }

    #[test]
    fn control_is_off_unless_turned_on_and_can_be_per_battery() {
        assert_eq!(with(None).unwrap(), Control::Off);
        assert!(!with(None).unwrap().allows(1, "Garage"));
        assert!(with(Some("on")).unwrap().allows(2, "Shed"));
        let some = with(Some("1, shed")).unwrap();
        assert!(some.allows(1, "Garage") && some.allows(2, "Shed") && !some.allows(3, "Loft"));
        let names = vec!["Garage".to_string(), "Shed".to_string()];
        assert!(some.unknown(&names).is_empty());
        assert_eq!(with(Some("3,Loft")).unwrap().unknown(&names), ["3", "Loft"]);
        let e = with(Some(" , ")).unwrap_err().to_string();
        assert!(e.contains("JK_BMS_CONTROL") && e.contains("1,3"), "{e}");
    }
}
