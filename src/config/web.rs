//! The web server's variables: where it listens, how live the page is, its token.

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
