//! The web server's variables: where it listens, where people open it, how live the page
//! is, its token.

use std::net::{IpAddr, SocketAddr};

use super::env::{invalid, Env};
use super::ConfigError;
use crate::web::WebConfig;

pub fn web(env: &Env) -> Result<WebConfig, ConfigError> {
    let mut web = WebConfig::default();
    if let Some(v) = env.get("WEB_BIND") {
        web.bind = v.parse().map_err(|_| {
            invalid(
                "WEB_BIND",
                &v,
                "expected an address and port like 0.0.0.0:8000 or 127.0.0.1:8080",
            )
        })?;
    }
    web.public_url = match env.get("WEB_URL") {
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        Some(v) => Some(public_url(&v)?),
        None => default_url(web.bind, hostname().as_deref(), in_container()),
    };
    if let Some(d) = env.seconds("WEB_LIVE_SEC", 0.2..=600.0)? {
        web.page.live = d;
    }
    if let Some(n) = env.number("CELL_DELTA_WARN_MV", 1u32..=2_000, "50")? {
        web.page.delta_warn_mv = n;
    }
    if let Some(n) = env.number("CELL_DELTA_ALARM_MV", 1u32..=2_000, "100")? {
        web.page.delta_alarm_mv = n;
    }
    if web.page.delta_alarm_mv < web.page.delta_warn_mv {
        return Err(invalid(
            "CELL_DELTA_ALARM_MV",
            &web.page.delta_alarm_mv.to_string(),
            format!(
                "must not be below CELL_DELTA_WARN_MV ({} mV)",
                web.page.delta_warn_mv
            ),
        ));
    }
    // a secret: as typed, and never shown in an error
    if let Some(v) = env.verbatim("WEB_AUTH_TOKEN") {
        if v.trim() != v || v.len() < 8 {
            return Err(invalid(
                "WEB_AUTH_TOKEN",
                "***",
                "use at least 8 characters, with no spaces around them",
            ));
        }
        web.auth_token = Some(v);
    }
    Ok(web)
}

/// `WEB_URL`: an `http://` or `https://` address.
fn public_url(value: &str) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(value).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    });
    url.map(|u| u.to_string()).ok_or_else(|| {
        invalid(
            "WEB_URL",
            value,
            "expected the address people open the dashboard at, like http://raspberrypi.local:8000/ (or off)",
        )
    })
}

/// The dashboard's address when `WEB_URL` is not set: the address it listens on when that is
/// one address, `http://<hostname>.local:<port>/` (mDNS, as Raspberry Pi OS announces it) when
/// it listens on every interface; none when it listens on loopback only or runs in a container
/// (whose hostname nobody else can resolve).
pub fn default_url(bind: SocketAddr, hostname: Option<&str>, container: bool) -> Option<String> {
    let port = bind.port();
    match bind.ip() {
        ip if ip.is_loopback() => None,
        ip if ip.is_unspecified() => {
            let host = hostname.filter(|h| !container && !h.is_empty() && !h.contains('.'))?;
            Some(format!("http://{host}.local:{port}/"))
        }
        IpAddr::V4(ip) => Some(format!("http://{ip}:{port}/")),
        IpAddr::V6(ip) => Some(format!("http://[{ip}]:{port}/")),
    }
}

/// This machine's name, as the kernel has it.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

/// Whether jkmon runs in a Docker or Podman container.
fn in_container() -> bool {
    std::path::Path::new("/.dockerenv").exists()
        || std::path::Path::new("/run/.containerenv").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_address_follows_where_it_listens() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            default_url(at("0.0.0.0:8000"), Some("raspberrypi"), false).as_deref(),
            Some("http://raspberrypi.local:8000/")
        );
        assert_eq!(
            default_url(at("0.0.0.0:8000"), Some("raspberrypi"), true),
            None
        );
        assert_eq!(default_url(at("127.0.0.1:8000"), Some("pi"), false), None);
        assert_eq!(
            default_url(at("192.168.1.20:8080"), Some("pi"), false).as_deref(),
            Some("http://192.168.1.20:8080/")
        );
        assert_eq!(
            default_url(at("[fd00::2]:8000"), None, false).as_deref(),
            Some("http://[fd00::2]:8000/")
        );
        assert_eq!(default_url(at("[::]:8000"), None, false), None);
        assert_eq!(
            public_url("https://solar.example.org").unwrap(),
            "https://solar.example.org/"
        );
        let e = public_url("raspberrypi:8000").unwrap_err().to_string();
        assert!(
            e.contains("WEB_URL") && e.contains("http://raspberrypi.local:8000/"),
            "{e}"
        );
    }
}
