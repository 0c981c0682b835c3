//! The pages: the dashboard, the history charts and the sign-in form, rendered with askama
//! from `templates/` (which escapes everything it prints), and the assets of `static/`,
//! compiled into the binary so a LAN-only Pi needs nothing from the internet.
//!
//! The dashboard is served with the current status embedded (the same JSON as
//! `/api/v1/status`, in an attribute, so it is escaped like any other text) and then kept live
//! by `/api/v1/events`: server-sent events, one status every `WEB_LIVE_SEC`. Server-sent
//! events rather than polling because the browser reconnects by itself, one long-lived
//! request costs a Pi less than a request every two seconds per open page, and the page can
//! tell a silent server (connection lost) from unchanged data.

use std::convert::Infallible;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use futures_util::stream::{self, Stream, StreamExt};

use super::{api, AppState, AUTH_COOKIE};
use crate::store::Battery;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `(name, content type, body)` of every file in `static/`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/common.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/charts.js"),
    ),
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/dashboard.js"),
    ),
    (
        "history.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/history.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../static/favicon.svg"),
    ),
];

pub fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!("web: a page did not render: {e}");
            api::error(StatusCode::INTERNAL_SERVER_ERROR, "the page did not render")
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard<'a> {
    version: &'static str,
    page: &'static str,
    batteries: &'a [Battery],
    cards: Vec<Card<'a>>,
    status_json: String,
    live_ms: u128,
    delta_warn_mv: u32,
    delta_alarm_mv: u32,
}

#[derive(Template)]
#[template(path = "charts.html")]
struct Charts<'a> {
    version: &'static str,
    page: &'static str,
    batteries: &'a [Battery],
    batteries_json: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    version: &'static str,
    page: &'static str,
    failed: bool,
}

/// One battery's card.
struct Card<'a> {
    battery: &'a Battery,
    /// The switch forms, where this process may switch the battery from the web.
    control: Option<CardControl>,
}

/// The switches a card's forms set, and the form's anti-forgery token.
struct CardControl {
    switches: Vec<&'static str>,
    csrf: String,
}

/// The card's switch forms: only with `WEB_AUTH_TOKEN` set, where JK_BMS_CONTROL lets this
/// process switch the battery, for the switches its board can set (by the layout the status
/// reports; none before the BMS answered once).
fn card_control(
    state: &AppState,
    status: &crate::store::read::StatusView,
    position: usize,
) -> Option<CardControl> {
    if state.auth_token.is_none() && !state.open_switching {
        return None;
    }
    let slot = state.control.slot(position)?;
    let snapshot = status
        .batteries
        .iter()
        .find(|b| b.position == position)?
        .snapshot
        .as_ref()?;
    let switches = slot
        .switches(Some(snapshot.cell_info.variant))
        .into_iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>();
    (!switches.is_empty()).then(|| CardControl {
        switches,
        csrf: state.csrf.clone(),
    })
}

/// The batteries the status shows, as the pages list them.
fn batteries_of(status: &crate::store::read::StatusView) -> Vec<Battery> {
    status
        .batteries
        .iter()
        .map(|b| Battery {
            position: b.position,
            name: b.name.clone(),
            address: b.address.clone(),
        })
        .collect()
}

/// `/`: from the status every request shares (no read of the file of its own).
pub async fn dashboard(State(state): State<Arc<AppState>>) -> Response {
    let status = match state.status().await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let batteries = batteries_of(&status.view);
    let cards = batteries
        .iter()
        .map(|battery| Card {
            battery,
            control: card_control(&state, &status.view, battery.position),
        })
        .collect();
    render(Dashboard {
        version: VERSION,
        page: "dashboard",
        batteries: &batteries,
        cards,
        status_json: String::from_utf8_lossy(&status.body).into_owned(),
        live_ms: state.page.live.as_millis(),
        delta_warn_mv: state.page.delta_warn_mv,
        delta_alarm_mv: state.page.delta_alarm_mv,
    })
}

pub async fn charts(State(state): State<Arc<AppState>>) -> Response {
    let batteries = match state.status().await {
        Ok(s) => batteries_of(&s.view),
        Err(e) => return e.into_response(),
    };
    render(Charts {
        version: VERSION,
        page: "charts",
        batteries: &batteries,
        batteries_json: serde_json::to_string(
            &batteries
                .iter()
                .map(|b| serde_json::json!({"position": b.position, "name": b.name}))
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default(),
    })
}

pub async fn login_form() -> Response {
    render(Login {
        version: VERSION,
        page: "login",
        failed: false,
    })
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

/// A right token sets the `jkmon_token` cookie (HttpOnly, SameSite=Strict) and goes to the
/// dashboard; a wrong one shows the form again with a 401.
/// Too many wrong tokens from one client: 429 for a while (see [`super::throttle`]).
pub async fn login(
    State(state): State<Arc<AppState>>,
    connected: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(token) = &state.auth_token else {
        return Redirect::to("/").into_response();
    };
    let ip = super::client_ip(connected.as_ref().map(|c| &c.0));
    let now = std::time::Instant::now();
    if let Err(wait) = state.throttle.check(ip, now) {
        return super::too_many(wait);
    }
    if super::same(form.token.as_bytes(), token.as_bytes()) {
        state.throttle.succeeded(ip);
        let cookie =
            format!("{AUTH_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000");
        let mut response = Redirect::to("/").into_response();
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
        return response;
    }
    state.throttle.failed(ip, "on the login form", now);
    let mut response = render(Login {
        version: VERSION,
        page: "login",
        failed: true,
    });
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
}

pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            // the pages ask for ?v=<version>, so a new jkmon is fetched anew
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            );
            (headers, *body).into_response()
        }
        None => api::error(StatusCode::NOT_FOUND, "no such file"),
    }
}

/// `GET /api/v1/events`: the status as a server-sent event named `status` every
/// `WEB_LIVE_SEC`, the first at once.
pub async fn events(
    State(state): State<Arc<AppState>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let state_for_stop = state.clone();
    let stream = stream::unfold((state, true), |(state, first)| async move {
        if !first {
            tokio::time::sleep(state.page.live).await;
        }
        let event = match state.status_json().await {
            Ok(status) => Event::default()
                .event("status")
                .data(String::from_utf8_lossy(&status)),
            Err(e) => Event::default()
                .event("problem")
                .data(format!("the database cannot be read: {e}")),
        };
        Some((Ok(event), (state, false)))
    });
    // the stream ends when the service stops, so no open dashboard holds the process
    let stop = state_for_stop.shutdown.clone().cancelled_owned();
    Sse::new(stream.take_until(stop)).keep_alive(KeepAlive::default())
}
