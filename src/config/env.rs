//! Reading one variable: trimmed, empty counts as unset, and a bad value becomes a
//! [`ConfigError::Invalid`] that names the variable, the value and the expected form. Each
//! section of the configuration reads its variables through [`Env`], so a variable's name is
//! written once, where it is read.

use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;

/// The variables as the process (or a test's map) has them.
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Env<'a> {
        Env { lookup }
    }

    /// The value as set, untrimmed (a secret keeps what the owner typed); `None` when unset
    /// or empty.
    pub fn verbatim(&self, var: &'static str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.is_empty())
    }

    /// The value, trimmed; `None` when unset or blank.
    pub fn get(&self, var: &'static str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// A value of a type that says itself what is wrong with a text.
    pub fn parse<T: FromStr<Err = String>>(
        &self,
        var: &'static str,
    ) -> Result<Option<T>, ConfigError> {
        self.get(var)
            .map(|v| v.parse().map_err(|problem| invalid(var, &v, problem)))
            .transpose()
    }

    /// A whole number in `range`; `example` shows the form in the error.
    pub fn number<T>(
        &self,
        var: &'static str,
        range: RangeInclusive<T>,
        example: &str,
    ) -> Result<Option<T>, ConfigError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(v) = self.get(var) else {
            return Ok(None);
        };
        let n: T = v
            .parse()
            .map_err(|_| invalid(var, &v, format!("expected a whole number like {example}")))?;
        if !range.contains(&n) {
            let problem = format!("must be between {} and {}", range.start(), range.end());
            return Err(invalid(var, &v, problem));
        }
        Ok(Some(n))
    }

    /// A number of seconds in `range`, fractions allowed.
    pub fn seconds(
        &self,
        var: &'static str,
        range: RangeInclusive<f64>,
    ) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = self.get(var) else {
            return Ok(None);
        };
        let n: f64 = v
            .parse()
            .map_err(|_| invalid(var, &v, "expected a number of seconds like 1 or 0.5"))?;
        if !range.contains(&n) {
            let problem = format!(
                "must be between {} and {} seconds",
                range.start(),
                range.end()
            );
            return Err(invalid(var, &v, problem));
        }
        Ok(Some(Duration::from_secs_f64(n)))
    }

    /// Whole seconds in `range`.
    pub fn whole_seconds(
        &self,
        var: &'static str,
        range: RangeInclusive<u64>,
        example: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        Ok(self.number(var, range, example)?.map(Duration::from_secs))
    }

    /// Whole milliseconds in `range`.
    pub fn millis(
        &self,
        var: &'static str,
        range: RangeInclusive<u64>,
        example: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        Ok(self.number(var, range, example)?.map(Duration::from_millis))
    }
}

/// A switch: `true`/`false` (also 1/0, yes/no, on/off, any case).
pub fn flag(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(var, value, "expected true or false")),
    }
}

/// The error for `var=value`.
pub fn invalid(var: &'static str, value: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_string(),
        problem: problem.into(),
    }
}
