//! The MQTT variables: `MQTT_URL` turns publishing on; the others shape it.

use std::path::PathBuf;

use percent_encoding::percent_decode_str;

use super::env::{flag, invalid};
use super::ConfigError;
use crate::mqtt::{Broker, MqttConfig};

/// `MQTT_URL`: `mqtt://[user[:password]@]host[:port]` (port 1883) or `mqtts://…` (TLS, port
/// 8883). User and password may be percent-encoded (`%40` for `@`). The password never appears
/// in an error.
pub fn parse_url(value: &str) -> Result<Broker, ConfigError> {
    let shown = redact(value);
    let bad = |problem: &str| invalid("MQTT_URL", &shown, problem);
    let expected = "expected mqtt://user:password@host:1883, or mqtts://… for TLS";
    let url = reqwest::Url::parse(value).map_err(|_| bad(expected))?;
    let tls = match url.scheme() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        _ => return Err(bad(&format!("unknown scheme; {expected}"))),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad(&format!("no broker host; {expected}")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(bad(
            "the URL names the broker only: set the topic with MQTT_TOPIC",
        ));
    }
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| bad("user and password must be UTF-8 (percent-encode special characters)"))
    };
    let user = decode(url.username())?;
    let password = url.password().map(decode).transpose()?;
    if user.is_empty() && password.is_some() {
        return Err(bad(
            "a password needs a user name: mqtt://user:password@host",
        ));
    }
    Ok(Broker {
        host,
        port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
        tls,
        user: (!user.is_empty()).then_some(user),
        password,
    })
}

/// `value` with the password (if any) replaced by `***`.
fn redact(value: &str) -> String {
    match (value.find("://"), value.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &value[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &value[..scheme + 3], &value[at..]),
                None => value.to_string(),
            }
        }
        _ => value.to_string(),
    }
}

/// A base topic: no wildcards, no empty levels, no leading or trailing `/`.
fn topic(var: &'static str, value: &str) -> Result<String, ConfigError> {
    if value.contains(['+', '#', '\0'])
        || value.starts_with('/')
        || value.ends_with('/')
        || value.contains("//")
    {
        return Err(invalid(
            var,
            value,
            "expected topic levels like jkmon or home/garage/jkmon: no + or #, no empty levels, no / at either end",
        ));
    }
    Ok(value.to_string())
}

/// `MQTT_STATE_SEC`'s default: a battery's state at most every 5 s.
pub const DEFAULT_STATE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the MQTT variables through `get` (which yields trimmed, non-empty values). `None`
/// when `MQTT_URL` is not set.
pub fn read(
    get: impl Fn(&'static str) -> Option<String>,
) -> Result<Option<MqttConfig>, ConfigError> {
    let Some(url) = get("MQTT_URL") else {
        for var in ["MQTT_TOPIC", "MQTT_NODEJKBMS", "MQTT_CA_FILE"] {
            if get(var).is_some() {
                tracing::warn!("{var} is set but MQTT_URL is not: nothing is published to MQTT");
            }
        }
        return Ok(None);
    };
    let broker = parse_url(&url)?;
    let base = match get("MQTT_TOPIC") {
        Some(v) => topic("MQTT_TOPIC", &v)?,
        None => "jkmon".into(),
    };
    let discovery_prefix = match get("MQTT_DISCOVERY_PREFIX") {
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        Some(v) => Some(topic("MQTT_DISCOVERY_PREFIX", &v)?),
        None => Some("homeassistant".into()),
    };
    let nodejkbms = get("MQTT_NODEJKBMS")
        .map(|v| flag("MQTT_NODEJKBMS", &v))
        .transpose()?
        .unwrap_or(false);
    let ca_file = get("MQTT_CA_FILE").map(PathBuf::from);
    if let Some(path) = &ca_file {
        if !broker.tls {
            return Err(invalid(
                "MQTT_CA_FILE",
                &path.display().to_string(),
                "a CA file is for TLS: use an mqtts:// MQTT_URL, or leave MQTT_CA_FILE empty",
            ));
        }
        if !path.is_file() {
            return Err(invalid(
                "MQTT_CA_FILE",
                &path.display().to_string(),
                "no such file: give the PEM file of the CA that signed the broker's certificate",
            ));
        }
    }
    let client_id =
        get("MQTT_CLIENT_ID").unwrap_or_else(|| format!("jkmon-{}", base.replace('/', "-")));
    let state_every = match get("MQTT_STATE_SEC") {
        None => DEFAULT_STATE_EVERY,
        Some(v) => match v.parse::<f64>() {
            Ok(s) if (0.1..=3_600.0).contains(&s) => std::time::Duration::from_secs_f64(s),
            _ => {
                return Err(invalid(
                    "MQTT_STATE_SEC",
                    &v,
                    "expected seconds between 0.1 and 3600, like 5",
                ))
            }
        },
    };
    Ok(Some(MqttConfig {
        broker,
        base,
        discovery_prefix,
        nodejkbms,
        ca_file,
        client_id,
        state_every,
        dashboard_url: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(pairs: &[(&'static str, &str)]) -> Result<Option<MqttConfig>, ConfigError> {
        let map: HashMap<&str, String> = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        read(|k| map.get(k).cloned())
    }

    #[test]
    fn the_state_interval_defaults_to_5_s_and_names_a_bad_value() {
        let url = ("MQTT_URL", "mqtt://broker.lan");
        let every = |pairs: &[(&'static str, &str)]| with(pairs).map(|c| c.unwrap().state_every);
        assert_eq!(every(&[url]).unwrap(), DEFAULT_STATE_EVERY);
        assert_eq!(
            every(&[url, ("MQTT_STATE_SEC", "2.5")]).unwrap(),
            std::time::Duration::from_millis(2_500)
        );
        for bad in ["0", "soon", "86400"] {
            let e = every(&[url, ("MQTT_STATE_SEC", bad)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("MQTT_STATE_SEC") && e.contains("like 5"), "{e}");
        }
    }

    #[test]
    fn urls_give_host_port_credentials_and_tls() {
        let b = parse_url("mqtt://jk:s%40cret@broker.lan").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.tls),
            ("broker.lan", 1883, false)
        );
        assert_eq!(b.user.as_deref(), Some("jk"));
        assert_eq!(b.password.as_deref(), Some("s@cret"));
        let b = parse_url("mqtts://10.0.0.2").unwrap();
        assert_eq!(
            (b.port, b.tls, b.user, b.password),
            (8883, true, None, None)
        );
        assert_eq!(parse_url("mqtt://[::1]:1999").unwrap().host, "::1");
    }

    #[test]
    fn bad_urls_are_named_without_their_password() {
        for (url, problem) in [
            ("http://u:hunter2@host", "unknown scheme"),
            ("broker.lan:1883", "expected mqtt://"),
            ("mqtt://u:hunter2@host/jkmon", "MQTT_TOPIC"),
            ("mqtt://:hunter2@host", "needs a user"),
        ] {
            let e = parse_url(url).unwrap_err().to_string();
            assert!(e.contains("MQTT_URL") && e.contains(problem), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn defaults_and_switches() {
        assert!(with(&[]).unwrap().is_none());
        let c = with(&[("MQTT_URL", "mqtt://127.0.0.1:1884")])
            .unwrap()
            .unwrap();
        assert_eq!(c.base, "jkmon");
        assert_eq!(c.discovery_prefix.as_deref(), Some("homeassistant"));
        assert!(!c.nodejkbms);
        assert_eq!(c.client_id, "jkmon-jkmon");
        let c = with(&[
            ("MQTT_URL", "mqtt://127.0.0.1"),
            ("MQTT_TOPIC", "home/garage/jk"),
            ("MQTT_DISCOVERY_PREFIX", "off"),
            ("MQTT_NODEJKBMS", "yes"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.base, "home/garage/jk");
        assert_eq!(c.discovery_prefix, None);
        assert!(c.nodejkbms);
        assert_eq!(c.client_id, "jkmon-home-garage-jk");
    }

    #[test]
    fn bad_topics_flags_and_ca_files_are_named() {
        for (pairs, var) in [
            (vec![("MQTT_TOPIC", "jk/#")], "MQTT_TOPIC"),
            (vec![("MQTT_TOPIC", "/jk")], "MQTT_TOPIC"),
            (
                vec![("MQTT_DISCOVERY_PREFIX", "ha/")],
                "MQTT_DISCOVERY_PREFIX",
            ),
            (vec![("MQTT_NODEJKBMS", "maybe")], "MQTT_NODEJKBMS"),
            (vec![("MQTT_CA_FILE", "/etc/hostname")], "MQTT_CA_FILE"),
        ] {
            let mut all = vec![("MQTT_URL", "mqtt://127.0.0.1")];
            all.extend(pairs);
            let e = with(&all).unwrap_err().to_string();
            assert!(e.starts_with(var), "{e}");
        }
        let e = with(&[
            ("MQTT_URL", "mqtts://h"),
            ("MQTT_CA_FILE", "/nonexistent.pem"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("no such file"), "{e}");
    }
}
