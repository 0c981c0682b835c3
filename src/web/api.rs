//! The JSON API. Every route reads the store off the async runtime and answers JSON; a bad
//! parameter gets a 400 that names it and says what is expected.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/status` | every battery's latest snapshot, the bank, the latest readings row |
//! | `GET /api/v1/batteries` | the batteries of `status` |
//! | `GET /api/v1/history?battery=&from=&to=&bucket=` | aggregated history (all optional: every battery, the last 24 h, a bucket for ~300 points) |
//! | `GET /api/v1/energy?days=N` | energy per local day, oldest first: each battery's charged and discharged kWh and the sum, the inverter's PV, load, grid import and export (default 7 days, at most 400; `null` = no data) |
//! | `GET /api/v1/health` | 200 when every configured BMS is fresh, else 503 with the reasons |
//! | `POST /api/v1/batteries/{n}/switches` | sets a switch (JK_BMS_CONTROL, `WEB_AUTH_TOKEN` only; see [`super::control`]) |
//! | `GET /history?days=N` | the Python monitor's rows, newest first (its scripts keep working) |

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};

use super::messages::{
    ApiError, DaysQuery, EnergyAnswer, EnergyMonthsAnswer, EnergyQuery, Health, HistoryQuery,
};
use super::AppState;
use crate::store::energy::{self, EnergySum};
use crate::store::read::{self, bucket_for, BUCKETS_S};
use crate::store::StoreError;

/// The longest history range one request may ask for.
const MAX_RANGE_DAYS: i64 = 400;

pub fn error(status: StatusCode, message: &str) -> Response {
    let body = ApiError {
        error: message.to_string(),
    };
    (status, Json(body)).into_response()
}

/// What is wrong with a query parameter, for a 400.
fn invalid(param: &str, value: &str, expected: &str) -> String {
    format!("{param}={value:?} is not valid: expected {expected}")
}

/// A JSON body that is already serialised.
pub fn json_body(body: axum::body::Bytes) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub async fn status(State(state): State<Arc<AppState>>) -> Result<Response, StoreError> {
    Ok(json_body(state.status_json().await?))
}

pub async fn batteries(State(state): State<Arc<AppState>>) -> Result<Response, StoreError> {
    let view = state.readers.status(&state.read).await?;
    Ok(Json(view.batteries).into_response())
}

pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    // the status every request shares: health answers as cheaply as a page; a deleted or
    // replaced file is seen at once (a stat), not when the cached status expires
    let view = match state.readers.check_file() {
        Err(e) => Err(e),
        Ok(()) => state.status().await.map(|s| s.view),
    };
    let view = match view {
        Ok(v) => v,
        Err(e) => {
            let problems = vec![format!("the database cannot be read: {e}")];
            let body = Health::Unhealthy { problems };
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
    };
    let limit = state.read.liveness.freshness.as_secs_f64();
    let problems: Vec<String> = view
        .batteries
        .iter()
        .filter(|b| !b.online)
        .map(|b| match b.age_s {
            Some(age) => format!(
                "{}: last snapshot {age:.0} s ago (limit {limit:.0} s), session {}",
                b.name, b.state
            ),
            None => format!("{}: no snapshot yet, session {}", b.name, b.state),
        })
        .collect();
    if problems.is_empty() {
        let batteries = view.batteries.len();
        Json(Health::Ok { batteries }).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health::Unhealthy { problems }),
        )
            .into_response()
    }
}

/// Days `/api/v1/energy` answers without `days=`.
const ENERGY_DAYS: u32 = 7;
/// Months `/api/v1/energy?by=month` answers without `months=`, and at most.
const ENERGY_MONTHS: u32 = 12;

/// A whole number from 1 to `hi` in `value` (`default` without one), or what is wrong with it.
fn count_param(
    name: &str,
    value: Option<&str>,
    default: u32,
    hi: u32,
    unit: &str,
) -> Result<u32, String> {
    match value {
        None => Ok(default),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=hi).contains(&n) => Ok(n),
            _ => Err(invalid(
                name,
                v,
                &format!("a whole number of {unit} from 1 to {hi}"),
            )),
        },
    }
}

/// Energy per local day (`by=day`, the default) or per local month (`by=month`), with the sum;
/// a day or a month without data has `null`s, never zeros.
pub async fn energy(
    State(state): State<Arc<AppState>>,
    Query(q): Query<EnergyQuery>,
) -> Result<Response, StoreError> {
    let by_month = match q.by.as_deref() {
        None | Some("day") => false,
        Some("month") => true,
        Some(other) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                &invalid("by", other, "day or month"),
            ))
        }
    };
    let days = if by_month {
        let months = match count_param(
            "months",
            q.months.as_deref(),
            ENERGY_MONTHS,
            ENERGY_MONTHS,
            "months",
        ) {
            Ok(m) => m,
            Err(message) => return Ok(error(StatusCode::BAD_REQUEST, &message)),
        };
        energy::days_for_months(read::local_day(Utc::now()), months)
    } else {
        match count_param(
            "days",
            q.days.as_deref(),
            ENERGY_DAYS,
            MAX_RANGE_DAYS as u32,
            "days",
        ) {
            Ok(d) => d,
            Err(message) => return Ok(error(StatusCode::BAD_REQUEST, &message)),
        }
    };
    let list = state.readers.energy(&state.read, days).await?;
    let total = EnergySum::of(&list);
    let generated_at = Utc::now();
    if by_month {
        let months = energy::months(&list);
        return Ok(Json(EnergyMonthsAnswer {
            generated_at,
            months,
            total,
        })
        .into_response());
    }
    Ok(Json(EnergyAnswer {
        generated_at,
        days: list,
        total,
    })
    .into_response())
}

/// `2026-01-16T21:32:00+02:00`, `2026-01-16` (midnight UTC) or unix seconds, from the year
/// 2000 to 2199 (no battery history lies outside, and the date arithmetic stays in range).
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let t = if let Ok(secs) = s.parse::<i64>() {
        DateTime::from_timestamp(secs, 0)
    } else if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        Some(t.with_timezone(&Utc))
    } else {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|n| n.and_utc())
    }?;
    (EARLIEST_S..LATEST_S).contains(&t.timestamp()).then_some(t)
}

/// 2000-01-01T00:00:00Z and 2200-01-01T00:00:00Z.
const EARLIEST_S: i64 = 946_684_800;
const LATEST_S: i64 = 7_258_118_400;

pub async fn history(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, StoreError> {
    let now = Utc::now();
    let refused = |message: String| Ok(error(StatusCode::BAD_REQUEST, &message));
    let (from, to) = match range(&q, now) {
        Ok(r) => r,
        Err(message) => return refused(message),
    };
    let bucket_s = match bucket(&q, (to - from).num_seconds()) {
        Ok(b) => b,
        Err(message) => return refused(message),
    };
    let known: Vec<usize> = state
        .readers
        .batteries(&state.read)
        .await?
        .iter()
        .map(|b| b.position)
        .collect();
    let positions = match positions(&q, &known) {
        Ok(p) => p,
        Err(message) => return refused(message),
    };
    // identical questions within the cache time (several open pages) are answered once; `to`
    // counts in 10-second steps for that
    let key = format!(
        "{positions:?}/{bucket_s}/{}/{}",
        from.timestamp().div_euclid(bucket_s),
        to.timestamp().div_euclid(10)
    );
    let config = state.read.clone();
    let body = state
        .history_json(key, move |c| {
            let view = read::history(c, &config, &positions, from, to, bucket_s, now)?;
            Ok(axum::body::Bytes::from(
                serde_json::to_vec(&view).unwrap_or_default(),
            ))
        })
        .await?;
    Ok(json_body(body))
}

/// `from` and `to` (default: the day up to now), at most [`MAX_RANGE_DAYS`] apart; else what
/// is wrong.
fn range(q: &HistoryQuery, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    const TIME: &str =
        "a time like 2026-01-16T21:32:00+02:00, a date like 2026-01-16, or unix seconds, between 2000 and 2199";
    let time = |key: &'static str, value: &Option<String>, default: DateTime<Utc>| match value
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        None => Ok(default),
        Some(v) => parse_time(v).ok_or_else(|| invalid(key, v, TIME)),
    };
    let to = time("to", &q.to, now)?;
    let from = time("from", &q.from, to - chrono::Duration::days(1))?;
    if from >= to || to - from > chrono::Duration::days(MAX_RANGE_DAYS) {
        return Err(format!(
            "from must be before to, and the range at most {MAX_RANGE_DAYS} days"
        ));
    }
    Ok((from, to))
}

/// `bucket`: one of [`BUCKETS_S`] giving at most 20,000 points, or the one for the range.
fn bucket(q: &HistoryQuery, range_s: i64) -> Result<i64, String> {
    let Some(v) = q.bucket.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(bucket_for(range_s));
    };
    match v.parse::<i64>() {
        Ok(b) if BUCKETS_S.contains(&b) && range_s / b <= 20_000 => Ok(b),
        _ => Err(invalid(
            "bucket",
            v,
            &format!("seconds, one of {BUCKETS_S:?}, giving at most 20000 points for the range"),
        )),
    }
}

/// `battery`: battery numbers from `known`, separated by commas; empty means all.
fn positions(q: &HistoryQuery, known: &[usize]) -> Result<Vec<usize>, String> {
    let Some(v) = q.battery.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(Vec::new());
    };
    v.split(',')
        .map(|p| p.trim().parse().ok().filter(|p| known.contains(p)))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            invalid(
                "battery",
                v,
                &format!("battery numbers from {known:?}, separated by commas"),
            )
        })
}

/// The Python monitor's route: `days` may be fractional; a missing or bad value gives the
/// newest 200 rows, as it did there. Every row of the range is sent, streamed from the database
/// to the socket a piece at a time, so a month of rows costs no more memory than a minute's.
pub async fn legacy_history(
    State(state): State<Arc<AppState>>,
    Query(q): Query<DaysQuery>,
) -> Response {
    let days = q
        .days
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
        .map(|d| d.min(MAX_RANGE_DAYS as f64));
    // a few at once: a month of rows is a long answer, and each holds a reader
    let Ok(stream) = state.streams.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many history downloads at once: try again in a minute",
        );
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(2);
    state
        .readers
        .stream(stream, move |conn| {
            let result = conn.and_then(|c| {
                read::legacy_history(c, days, Utc::now(), |chunk| {
                    tx.blocking_send(Ok(chunk.into())).is_ok()
                })
            });
            if let Err(e) = result {
                tracing::warn!("web: /history: {e}");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        })
        .await;
    let body = axum::body::Body::from_stream(tokio_stream_of(rx));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The receiving end of a channel as a stream.
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
