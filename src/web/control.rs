//! `POST /api/v1/batteries/{n}/switches`: switching a BMS from the API, `jkmon set` and the
//! dashboard's form (JK_BMS_CONTROL).
//!
//! Only with `WEB_AUTH_TOKEN` set: an open dashboard on the LAN never switches a BMS (the one
//! exception is `run --demo`, whose BMS is simulated). The body
//! is JSON (`{"switch": "charging", "on": false}`, from scripts and `jkmon set`, which sends
//! `X-Jkmon-Client: cli`) or the dashboard's form (`switch=charging&on=off&csrf=…`).
//!
//! Forgery: a JSON body cannot be sent cross-site without a CORS preflight jkmon never
//! answers; the form must carry this process's anti-forgery token, which only a page served
//! to a signed-in browser holds; and a browser that says the request is cross-site
//! (`Sec-Fetch-Site`, or an `Origin` other than `Host`) is refused either way. The cookie is
//! `SameSite=Strict` besides.

use std::sync::Arc;

use super::messages::{SwitchAnswer, SwitchRequest};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::Deserialize;

use super::api::error;
use super::{same, AppState};
use crate::control::WriteError;
use crate::control::{SetError, Source};
use crate::protocol::control::{Setting, Switch};

/// The header `jkmon set` sends, so its writes are recorded as the command line's.
pub const CLIENT_HEADER: &str = "x-jkmon-client";

/// A fresh anti-forgery token for the dashboard's form (one per process).
pub fn new_csrf_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // no randomness: a token nobody can guess is impossible, so no form is accepted
        return String::new();
    }
    hex::encode(bytes)
}

#[derive(Deserialize)]
struct FormBody {
    switch: String,
    on: String,
    #[serde(default)]
    csrf: String,
}

/// What was asked, and by whom.
struct Asked {
    setting: Setting,
    source: Source,
    /// The form: answer with a redirect back to the dashboard.
    form: bool,
}

/// Why a request is refused before anything is asked of the BMS: the status and the words.
type Refusal = (StatusCode, String);

fn bad(message: String) -> Refusal {
    (StatusCode::BAD_REQUEST, message)
}

/// The request as a setting, or why it is refused.
fn asked(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Asked, Refusal> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    // `null` is what a browser sends under jkmon's `Referrer-Policy: no-referrer`: it says
    // nothing, and Sec-Fetch-Site speaks for it
    let foreign_origin = match (origin.filter(|o| *o != "null"), host) {
        (Some(o), Some(h)) => o.split_once("://").map(|(_, rest)| rest) != Some(h),
        (Some(_), None) => true,
        _ => false,
    };
    if cross_site || foreign_origin {
        return Err((
            StatusCode::FORBIDDEN,
            "a switch may not be set from another site's page".into(),
        ));
    }
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let switch = |name: &str| name.parse::<Switch>().map_err(bad);
    if kind.starts_with("application/json") {
        let b: SwitchRequest = serde_json::from_slice(body).map_err(|e| {
            bad(format!(
                "the body is not {{\"switch\": \"charging|discharging|balancer|heater\", \"on\": true|false}}: {e}"
            ))
        })?;
        let cli = headers
            .get(CLIENT_HEADER)
            .is_some_and(|v| v.as_bytes() == b"cli");
        return Ok(Asked {
            setting: Setting {
                switch: switch(&b.switch)?,
                on: b.on,
            },
            source: if cli { Source::Cli } else { Source::Api },
            form: false,
        });
    }
    if kind.starts_with("application/x-www-form-urlencoded") {
        let b: FormBody = serde_urlencoded::from_bytes(body)
            .map_err(|e| bad(format!("the form is incomplete: {e}")))?;
        if state.csrf.is_empty() || !same(b.csrf.as_bytes(), state.csrf.as_bytes()) {
            return Err((
                StatusCode::FORBIDDEN,
                "the form's anti-forgery token is missing or old (jkmon restarted?): reload the dashboard and try again".into(),
            ));
        }
        let setting: Setting = format!("{}={}", b.switch, b.on).parse().map_err(bad)?;
        return Ok(Asked {
            setting,
            source: Source::Web,
            form: true,
        });
    }
    Err((
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "send JSON (Content-Type: application/json) such as {\"switch\": \"charging\", \"on\": false}".into(),
    ))
}

/// `POST /api/v1/batteries/{n}/switches` (behind the access token, see [`super::router`]).
pub async fn switch(
    State(state): State<Arc<AppState>>,
    Path(battery): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.auth_token.is_none() && !state.open_switching {
        return error(
            StatusCode::FORBIDDEN,
            "switching a BMS from the web needs WEB_AUTH_TOKEN: set it, restart jkmon, and send it as `Authorization: Bearer <token>`",
        );
    }
    let asked = match asked(&state, &headers, &body) {
        Ok(a) => a,
        Err((status, message)) => return error(status, &message),
    };
    let slot = match state.control.find(&battery) {
        Ok(s) => s.clone(),
        Err(e) => return error(status_of(&e), &e.to_string()),
    };
    let result = state
        .control
        .set(slot.position, asked.setting, asked.source)
        .await;
    // the next status shows the write and what the BMS reports since
    state.forget_status();
    if asked.form {
        // the card shows the outcome (its list of writes)
        return Redirect::to(&format!("/#battery-{}", slot.position)).into_response();
    }
    let status = match &result {
        Ok(()) => StatusCode::OK,
        Err(e) => status_of(e),
    };
    let body = SwitchAnswer {
        battery: slot.name.clone(),
        position: slot.position,
        switch: asked.setting.switch.as_str().to_string(),
        on: asked.setting.on,
        confirmed: result.is_ok(),
        error: result.err().map(|e| e.to_string()),
    };
    (status, Json(body)).into_response()
}

/// The HTTP status of a write that was not made or not confirmed.
fn status_of(e: &SetError) -> StatusCode {
    match e {
        SetError::UnknownBattery { .. } => StatusCode::NOT_FOUND,
        SetError::ControlOff { .. } | SetError::NotHere { .. } => StatusCode::FORBIDDEN,
        SetError::NoWriteLink { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        // a newer command for the same switch took its place: the switch follows that one
        SetError::Superseded { .. } => StatusCode::CONFLICT,
        SetError::Write { source, .. } => match source {
            WriteError::NotOnThisBoard(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WriteError::Refused { .. } => StatusCode::CONFLICT,
            WriteError::NoConfirmation(..) => StatusCode::GATEWAY_TIMEOUT,
            WriteError::Offline(_)
            | WriteError::Dropped(_)
            | WriteError::Stopped
            | WriteError::Busy(_)
            | WriteError::Unanswered(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
    }
}
