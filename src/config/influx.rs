//! The InfluxDB variables: `INFLUX_URL` turns the sink on; `INFLUX_DATABASE` (1.x, and the
//! v1-compatible endpoint of newer servers) or `INFLUX_BUCKET` (2.x, 3.x) says where to write.

use super::env::{flag, invalid, Env};
use super::ConfigError;
use crate::influx::{Api, InfluxConfig, DEFAULT_BUFFER_POINTS, DEFAULT_EVERY};

const V1: [&str; 4] = [
    "INFLUX_DATABASE",
    "INFLUX_RETENTION_POLICY",
    "INFLUX_USER",
    "INFLUX_PASSWORD",
];
const V2: [&str; 3] = ["INFLUX_BUCKET", "INFLUX_ORG", "INFLUX_TOKEN"];

/// The sink's settings; `None` when `INFLUX_URL` is not set.
pub fn influx(env: &Env) -> Result<Option<InfluxConfig>, ConfigError> {
    let Some(url) = env.get("INFLUX_URL") else {
        for var in V1.iter().chain(&V2) {
            if env.get(var).is_some() {
                tracing::warn!(
                    "{var} is set but INFLUX_URL is not: nothing is written to InfluxDB"
                );
            }
        }
        return Ok(None);
    };
    let url = parse_url(&url)?;
    let api = api(env)?;
    let every = env
        .seconds("INFLUX_INTERVAL", 0.0..=3_600.0)?
        .unwrap_or(DEFAULT_EVERY);
    let buffer_points = env
        .number("INFLUX_BUFFER_POINTS", 100..=10_000_000, "50000")?
        .unwrap_or(DEFAULT_BUFFER_POINTS);
    let gzip = match env.get("INFLUX_GZIP") {
        None => true,
        Some(v) => flag("INFLUX_GZIP", &v)?,
    };
    Ok(Some(InfluxConfig {
        url,
        api,
        every,
        buffer_points,
        gzip,
    }))
}

/// `INFLUX_URL`: `http://host:8086` or `https://…`, a path prefix allowed (behind a proxy);
/// no credentials in it (they have variables of their own, which no log prints).
fn parse_url(value: &str) -> Result<reqwest::Url, ConfigError> {
    let expected = "expected the server's address, like http://127.0.0.1:8086";
    let url = reqwest::Url::parse(value).map_err(|_| {
        // the value may hold a password: name only its form
        invalid("INFLUX_URL", &shown(value), expected)
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("INFLUX_URL", &shown(value), expected));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "INFLUX_URL",
            &shown(value),
            "put no credentials in the URL: set INFLUX_USER and INFLUX_PASSWORD (1.x) or INFLUX_TOKEN (2.x, 3.x)",
        ));
    }
    if url.query().is_some() || url.path().ends_with("/write") {
        return Err(invalid(
            "INFLUX_URL",
            &shown(value),
            "give the server's address only: jkmon adds /write or /api/v2/write and the database or bucket",
        ));
    }
    Ok(url)
}

/// The URL with anything between `://` and `@` hidden.
fn shown(value: &str) -> String {
    match (value.find("://"), value.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &value[..scheme + 3], &value[at..])
        }
        _ => value.to_string(),
    }
}

fn api(env: &Env) -> Result<Api, ConfigError> {
    let database = env.get("INFLUX_DATABASE");
    let bucket = env.get("INFLUX_BUCKET");
    match (database, bucket) {
        (Some(database), None) => {
            if let Some(var) = V2.iter().find(|v| env.get(v).is_some()) {
                return Err(invalid(
                    var,
                    "…",
                    "INFLUX_DATABASE is set, so jkmon writes through the 1.x API, which takes INFLUX_USER and INFLUX_PASSWORD: set INFLUX_BUCKET instead of INFLUX_DATABASE for the 2.x API",
                ));
            }
            let user = env.get("INFLUX_USER");
            let password = env.verbatim("INFLUX_PASSWORD");
            if password.is_some() && user.is_none() {
                return Err(invalid(
                    "INFLUX_USER",
                    "",
                    "INFLUX_PASSWORD is set: give the user it belongs to",
                ));
            }
            Ok(Api::V1 {
                database,
                retention_policy: env.get("INFLUX_RETENTION_POLICY"),
                user,
                password,
            })
        }
        (None, Some(bucket)) => {
            if let Some(var) = V1.iter().find(|v| env.get(v).is_some()) {
                return Err(invalid(
                    var,
                    "…",
                    "INFLUX_BUCKET is set, so jkmon writes through the 2.x API, which takes INFLUX_TOKEN and INFLUX_ORG",
                ));
            }
            Ok(Api::V2 {
                org: env.get("INFLUX_ORG"),
                bucket,
                token: env.verbatim("INFLUX_TOKEN"),
            })
        }
        (Some(_), Some(_)) => Err(invalid(
            "INFLUX_BUCKET",
            "…",
            "set INFLUX_DATABASE (InfluxDB 1.x) or INFLUX_BUCKET (2.x, 3.x), not both",
        )),
        (None, None) => Err(invalid(
            "INFLUX_DATABASE",
            "",
            "INFLUX_URL is set: name where to write, INFLUX_DATABASE for InfluxDB 1.x or INFLUX_BUCKET (with INFLUX_ORG and INFLUX_TOKEN) for 2.x and 3.x",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> Result<Option<InfluxConfig>, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| map.get(k).cloned();
        influx(&Env::new(&lookup))
    }

    #[test]
    fn off_without_a_url_and_defaults_with_one() {
        assert_eq!(with(&[("INFLUX_DATABASE", "jk")]).unwrap(), None);
        let c = with(&[
            ("INFLUX_URL", "http://127.0.0.1:8086"),
            ("INFLUX_DATABASE", "jk"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.every, DEFAULT_EVERY);
        assert_eq!(c.buffer_points, DEFAULT_BUFFER_POINTS);
        assert!(c.gzip);
        assert_eq!(c.describe(), "database jk at http://127.0.0.1:8086/");
    }

    #[test]
    fn the_bucket_chooses_the_2x_api_and_the_token_never_prints() {
        let c = with(&[
            ("INFLUX_URL", "https://influx.lan/proxy"),
            ("INFLUX_BUCKET", "jk"),
            ("INFLUX_ORG", "home"),
            ("INFLUX_TOKEN", "s3cret=="),
            ("INFLUX_INTERVAL", "0"),
        ])
        .unwrap()
        .unwrap();
        assert!(matches!(&c.api, Api::V2 { token: Some(t), .. } if t == "s3cret=="));
        assert_eq!(c.every, std::time::Duration::ZERO);
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
    }

    #[test]
    fn bad_values_name_their_variable_without_a_secret() {
        for (pairs, var) in [
            (vec![("INFLUX_URL", "influx.lan:8086")], "INFLUX_URL"),
            (vec![("INFLUX_URL", "http://u:hunter2@h")], "INFLUX_URL"),
            (vec![("INFLUX_URL", "http://h/write?db=x")], "INFLUX_URL"),
            (vec![("INFLUX_URL", "http://h")], "INFLUX_DATABASE"),
            (
                vec![
                    ("INFLUX_URL", "http://h"),
                    ("INFLUX_DATABASE", "a"),
                    ("INFLUX_BUCKET", "b"),
                ],
                "INFLUX_BUCKET",
            ),
            (
                vec![
                    ("INFLUX_URL", "http://h"),
                    ("INFLUX_DATABASE", "a"),
                    ("INFLUX_TOKEN", "hunter2"),
                ],
                "INFLUX_TOKEN",
            ),
            (
                vec![
                    ("INFLUX_URL", "http://h"),
                    ("INFLUX_DATABASE", "a"),
                    ("INFLUX_PASSWORD", "hunter2"),
                ],
                "INFLUX_USER",
            ),
            (
                vec![
                    ("INFLUX_URL", "http://h"),
                    ("INFLUX_DATABASE", "a"),
                    ("INFLUX_INTERVAL", "soon"),
                ],
                "INFLUX_INTERVAL",
            ),
            (
                vec![
                    ("INFLUX_URL", "http://h"),
                    ("INFLUX_DATABASE", "a"),
                    ("INFLUX_BUFFER_POINTS", "5"),
                ],
                "INFLUX_BUFFER_POINTS",
            ),
            (
                vec![
                    ("INFLUX_URL", "http://h"),
                    ("INFLUX_DATABASE", "a"),
                    ("INFLUX_GZIP", "maybe"),
                ],
                "INFLUX_GZIP",
            ),
        ] {
            let e = with(&pairs).unwrap_err().to_string();
            assert!(e.starts_with(var), "{pairs:?}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
