//! The web server: the dashboard and history pages ([`pages`]), the JSON API under `/api/v1`
//! ([`api`]), Prometheus's `/metrics` ([`metrics`]) and the Python monitor's `/history?days=N`.
//! Every handler reads the store through [`Readers`]; the one that writes is [`control`]'s
//! switch (JK_BMS_CONTROL, with `WEB_AUTH_TOKEN` only).
//!
//! [`router`] builds the routes without I/O, so tests drive it with `oneshot`; [`serve`] binds
//! `WEB_BIND` and runs it until the service's cancellation token fires.
//!
//! Every response carries security headers (no sniffing, no framing, no referrer, a
//! same-origin content policy). With `WEB_AUTH_TOKEN` set, everything except `/api/v1/health`,
//! `/login` and `/static/` needs `Authorization: Bearer <token>` or the `jkmon_token` cookie
//! (which `/login` sets); pages send a browser without it to `/login`, the API and `/metrics`
//! answer 401.
//!
//! Layer 6 (a view): may use `control`, `store`, `report`, `telemetry` and below (not `session`);
//! never another view.

pub mod api;
pub mod control;
pub mod energy_page;
pub mod messages;
pub mod metrics;
pub mod pages;
pub mod server;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::store::read::{ReadConfig, Readers};

/// The name of the cookie that may carry `WEB_AUTH_TOKEN`.
pub const AUTH_COOKIE: &str = "jkmon_token";

/// What the pages show and how often they update.
#[derive(Debug, Clone, PartialEq)]
pub struct PageConfig {
    /// `WEB_LIVE_SEC`: seconds between two live updates of an open dashboard.
    pub live: std::time::Duration,
    /// `CELL_DELTA_WARN_MV`, `CELL_DELTA_ALARM_MV`: the cell delta turns yellow, then red.
    pub delta_warn_mv: u32,
    pub delta_alarm_mv: u32,
}

impl Default for PageConfig {
    fn default() -> Self {
        PageConfig {
            live: std::time::Duration::from_secs(2),
            delta_warn_mv: 50,
            delta_alarm_mv: 100,
        }
    }
}

/// The web server's settings (from the typed config).
#[derive(Clone, PartialEq)]
pub struct WebConfig {
    /// `WEB_BIND`.
    pub bind: SocketAddr,
    /// `WEB_AUTH_TOKEN`: `None` = open (a LAN-only installation).
    pub auth_token: Option<String>,
    /// `WEB_URL`: where people open the dashboard (Home Assistant links each battery to it).
    pub public_url: Option<String>,
    pub page: PageConfig,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("bind", &self.bind)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "***"))
            .field("public_url", &self.public_url)
            .field("page", &self.page)
            .finish()
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 8000)),
            auth_token: None,
            public_url: None,
            page: PageConfig::default(),
        }
    }
}

/// How long a computed status or history answer is reused. Every open dashboard asks for the
/// status every `WEB_LIVE_SEC`; a wall tablet and three phones then cost one database read.
const STATUS_CACHE: std::time::Duration = std::time::Duration::from_millis(500);
const HISTORY_CACHE: std::time::Duration = std::time::Duration::from_secs(10);
/// Distinct history queries kept at once.
const HISTORY_CACHE_ENTRIES: usize = 32;

/// Long streamed answers at once (the Python monitor's `/history`): each holds one of the
/// readers' eight database connections while it streams, so the pages, the status and the
/// health check always keep most of them.
pub const MAX_STREAMS: usize = 3;

/// A JSON answer computed at `at`.
#[derive(Clone)]
pub struct Cached {
    at: std::time::Instant,
    pub body: axum::body::Bytes,
}

/// The status as the pages, the API, the event streams and the health check share it: read
/// at most once per [`STATUS_CACHE`] however many ask, typed and as JSON.
#[derive(Clone)]
pub struct Status {
    at: std::time::Instant,
    pub view: Arc<crate::store::read::StatusView>,
    pub body: axum::body::Bytes,
}

/// What every handler shares.
pub struct AppState {
    pub readers: Readers,
    pub read: ReadConfig,
    pub auth_token: Option<String>,
    pub page: PageConfig,
    /// The service's counters, when this process runs the BMS sessions.
    pub telemetry: Option<Arc<crate::telemetry::Telemetry>>,
    /// Fires when the service stops: open event streams end with it.
    pub shutdown: CancellationToken,
    /// Wrong access tokens per client.
    pub throttle: throttle::Throttle,
    /// Switching the batteries (JK_BMS_CONTROL), where this process runs their sessions.
    pub control: crate::control::Controller,
    /// The dashboard switch form's anti-forgery token ([`control`]).
    pub csrf: String,
    /// Switching without `WEB_AUTH_TOKEN`: only in `run --demo`, where every BMS is simulated.
    pub open_switching: bool,
    /// Long streamed answers (`/history`) at once: [`MAX_STREAMS`].
    pub streams: Arc<tokio::sync::Semaphore>,
    status: std::sync::Mutex<Option<Status>>,
    /// One status read at a time: the others wait for it rather than read the file too.
    status_read: tokio::sync::Mutex<()>,
    history: std::sync::Mutex<std::collections::HashMap<String, Cached>>,
}

impl AppState {
    pub fn new(
        readers: Readers,
        read: ReadConfig,
        auth_token: Option<String>,
        page: PageConfig,
    ) -> AppState {
        AppState {
            readers,
            read,
            auth_token,
            page,
            telemetry: None,
            shutdown: CancellationToken::new(),
            throttle: Default::default(),
            control: Default::default(),
            csrf: control::new_csrf_token(),
            open_switching: false,
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            status: Default::default(),
            status_read: Default::default(),
            history: Default::default(),
        }
    }

    /// The status, at most `STATUS_CACHE` old: one read of the file serves every request
    /// meanwhile, and requests that find it expired wait for one read rather than each read.
    pub async fn status(&self) -> Result<Status, crate::store::StoreError> {
        let fresh = || {
            self.status
                .lock()
                .expect("cache lock")
                .as_ref()
                .filter(|c| c.at.elapsed() < STATUS_CACHE)
                .cloned()
        };
        if let Some(c) = fresh() {
            return Ok(c);
        }
        let _one_read = self.status_read.lock().await;
        if let Some(c) = fresh() {
            return Ok(c);
        }
        let view = self.readers.status(&self.read).await?;
        let body = axum::body::Bytes::from(serde_json::to_vec(&view).unwrap_or_default());
        let status = Status {
            at: std::time::Instant::now(),
            view: Arc::new(view),
            body,
        };
        *self.status.lock().expect("cache lock") = Some(status.clone());
        Ok(status)
    }

    /// The status as JSON ([`AppState::status`]).
    pub async fn status_json(&self) -> Result<axum::body::Bytes, crate::store::StoreError> {
        Ok(self.status().await?.body)
    }

    /// The next status is read afresh (a switch was just set).
    pub fn forget_status(&self) {
        *self.status.lock().expect("cache lock") = None;
    }

    /// A history answer for `key`, computed by `compute` unless one at most `HISTORY_CACHE`
    /// old exists.
    pub async fn history_json(
        &self,
        key: String,
        compute: impl FnOnce(&rusqlite::Connection) -> Result<axum::body::Bytes, crate::store::StoreError>
            + Send
            + 'static,
    ) -> Result<axum::body::Bytes, crate::store::StoreError> {
        if let Some(c) = self.history.lock().expect("cache lock").get(&key) {
            if c.at.elapsed() < HISTORY_CACHE {
                return Ok(c.body.clone());
            }
        }
        let body = self.readers.run(compute).await?;
        let mut cache = self.history.lock().expect("cache lock");
        if cache.len() >= HISTORY_CACHE_ENTRIES {
            cache.retain(|_, c| c.at.elapsed() < HISTORY_CACHE);
            if cache.len() >= HISTORY_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(
            key,
            Cached {
                at: std::time::Instant::now(),
                body: body.clone(),
            },
        );
        Ok(body)
    }
}

/// The routes, without I/O.
pub fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/", get(pages::dashboard))
        .route("/charts", get(pages::charts))
        .route("/energy", get(energy_page::page))
        .route("/api/v1/events", get(pages::events))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/batteries", get(api::batteries))
        .route("/api/v1/history", get(api::history))
        .route("/api/v1/energy", get(api::energy))
        .route("/history", get(api::legacy_history))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/api/v1/batteries/{battery}/switches",
            axum::routing::post(control::switch),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/api/v1/health", get(api::health))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/static/{name}", get(pages::asset))
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn not_found() -> Response {
    api::error(StatusCode::NOT_FOUND, "no such page")
}

/// Compares without an early exit, so the time taken says nothing about the token.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client's address as [`server`] marks each request (0.0.0.0 where none is known, as in
/// tests through `oneshot`).
pub(crate) fn client_ip(
    connected: Option<&axum::extract::ConnectInfo<SocketAddr>>,
) -> std::net::IpAddr {
    connected.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// 429 with `Retry-After` for a client that guessed too often.
pub(crate) fn too_many(wait: std::time::Duration) -> Response {
    let mut response = api::error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "too many wrong access tokens from this address: try again in {} s",
            wait.as_secs().max(1)
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

async fn require_token(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(token) = &state.auth_token else {
        return next.run(req).await;
    };
    let ip = client_ip(req.extensions().get());
    let now = std::time::Instant::now();
    if let Err(wait) = state.throttle.check(ip, now) {
        return too_many(wait);
    }
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(AUTH_COOKIE)?.strip_prefix('='))
        .next();
    if [bearer, cookie]
        .into_iter()
        .flatten()
        .any(|given| same(given.as_bytes(), token.as_bytes()))
    {
        state.throttle.succeeded(ip);
        return next.run(req).await;
    }
    if bearer.is_some() {
        state.throttle.failed(ip, "as a bearer token", now);
    } else if cookie.is_some() {
        state.throttle.failed(ip, "in the cookie", now);
    }
    let path = req.uri().path();
    if !path.starts_with("/api/") && path != "/history" && path != "/metrics" {
        return axum::response::Redirect::to("/login").into_response();
    }
    let mut response = api::error(
        StatusCode::UNAUTHORIZED,
        "this jkmon needs its access token (WEB_AUTH_TOKEN): send `Authorization: Bearer <token>`",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Serves `router` on `bind` until `stop` fires; then every connection ends within
/// [`server::STOP_GRACE`] (see [`server`]).
pub async fn serve(
    bind: SocketAddr,
    state: Arc<AppState>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {bind} (WEB_BIND): {e}; is another program using the port?"),
        )
    })?;
    tracing::info!("web: listening on http://{}", listener.local_addr()?);
    server::run(listener, router(state), stop).await
}

impl IntoResponse for crate::store::StoreError {
    fn into_response(self) -> Response {
        tracing::warn!("web: {self}");
        api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database cannot be read right now",
        )
    }
}
