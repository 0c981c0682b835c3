//! One write to InfluxDB over HTTP, and what its answer means: written, InfluxDB away (try
//! again), the configuration refused (name the variable to fix), or the points refused.
//!
//! - 1.x (and the v1-compatible `/write` of 1.8+, 2.x and 3.x): `POST /write?db=&rp=`, the
//!   user and password as HTTP Basic authentication (never in the URL, which errors print);
//! - 2.x and 3.x: `POST /api/v2/write?org=&bucket=`, `Authorization: Token …`.
//!
//! Both with `precision=ms`, and the body gzip-compressed unless `INFLUX_GZIP=false`.

use std::io::Write as _;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};

use super::{Api, InfluxConfig};

/// How long one write may take before InfluxDB counts as away.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The configuration InfluxDB refused, and the variable that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub var: &'static str,
    pub problem: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (check {})", self.problem, self.var)
    }
}

/// What one write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// Not reachable, too slow, or busy (5xx, 429): the points wait and go again.
    Away(String),
    /// Credentials, permission, database, bucket or address: the points wait, and the owner
    /// is told which variable to fix.
    Refused(Refusal),
    /// The points themselves (a 400 about the lines): sending them again cannot help.
    Rejected(String),
}

/// How jkmon shows who it is; both are marked sensitive, so no log prints them.
#[derive(Debug, Clone)]
enum Auth {
    Basic { user: String, password: String },
    Token(HeaderValue),
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    write_url: reqwest::Url,
    authorization: Option<Auth>,
    gzip: bool,
    v2: bool,
}

impl Client {
    pub fn new(config: &InfluxConfig) -> Client {
        let base = config.url.as_str().trim_end_matches('/');
        let (path, query, authorization, v2) = match &config.api {
            Api::V1 {
                database,
                retention_policy,
                user,
                password,
            } => {
                let mut query = vec![("db", database.clone())];
                if let Some(rp) = retention_policy {
                    query.push(("rp", rp.clone()));
                }
                let auth = user.as_ref().map(|u| Auth::Basic {
                    user: u.clone(),
                    password: password.clone().unwrap_or_default(),
                });
                ("write", query, auth, false)
            }
            Api::V2 { org, bucket, token } => {
                let mut query = vec![("bucket", bucket.clone())];
                if let Some(org) = org {
                    query.push(("org", org.clone()));
                }
                let auth = token
                    .as_ref()
                    .map(|t| Auth::Token(secret(&format!("Token {t}"))));
                ("api/v2/write", query, auth, true)
            }
        };
        let mut write_url =
            reqwest::Url::parse(&format!("{base}/{path}")).unwrap_or_else(|_| config.url.clone());
        {
            let mut pairs = write_url.query_pairs_mut();
            for (k, v) in &query {
                pairs.append_pair(k, v);
            }
            pairs.append_pair("precision", "ms");
        }
        let http = reqwest::Client::builder()
            .timeout(WRITE_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("jkmon/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Client {
            http,
            write_url,
            authorization,
            gzip: config.gzip,
            v2,
        }
    }

    /// Where the points go (no secret in it).
    pub fn write_url(&self) -> &reqwest::Url {
        &self.write_url
    }

    /// Writes `body` (lines, each ending in a line break): what it came to, and the bytes
    /// sent.
    pub async fn write(&self, body: &str) -> (Outcome, usize) {
        let mut request = self
            .http
            .post(self.write_url.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        request = self.authorize(request);
        let (request, sent) = match self.gzip.then(|| gzip(body.as_bytes())).flatten() {
            Some(compressed) => {
                let n = compressed.len();
                (request.header(CONTENT_ENCODING, "gzip").body(compressed), n)
            }
            None => (request.body(body.to_string()), body.len()),
        };
        (self.answer(request.send().await).await, sent)
    }

    /// Whether InfluxDB is there and lets jkmon write: an empty write, which checks the
    /// credentials, the permission and the database or bucket without adding a point.
    pub async fn check(&self) -> Outcome {
        let mut request = self.http.post(self.write_url.clone());
        request = self.authorize(request);
        match self.answer(request.send().await).await {
            // 2.x refuses an empty body as having no points, after it checked everything else
            Outcome::Rejected(m) if self.v2 && m.contains("points") => Outcome::Written,
            other => other,
        }
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.authorization {
            Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password)),
            Some(Auth::Token(token)) => request.header(AUTHORIZATION, token.clone()),
            None => request,
        }
    }

    async fn answer(&self, sent: reqwest::Result<reqwest::Response>) -> Outcome {
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::Away(reach_error(&e)),
        };
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Outcome::Written;
        }
        let header = response
            .headers()
            .get("x-influxdb-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.text().await.unwrap_or_default();
        classify(status, &header.unwrap_or_else(|| message(&body)), self.v2)
    }
}

/// A header value that is never printed.
fn secret(value: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body).ok()?;
    encoder.finish().ok()
}

/// Why InfluxDB could not be reached, in words (the URL holds no secret).
fn reach_error(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        format!("no answer within {} s", WRITE_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if !e.is_timeout() {
            text = format!("{text}: {s}");
        }
        source = s.source();
    }
    text
}

/// The error InfluxDB put in its body (`{"error": …}` from 1.x, `{"message": …}` from 2.x),
/// or the start of the body.
fn message(body: &str) -> String {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    json.as_ref()
        .and_then(|j| j.get("error").or_else(|| j.get("message")))
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().chars().take(200).collect())
}

/// What an error answer means, and whom to ask.
pub fn classify(status: u16, message: &str, v2: bool) -> Outcome {
    let refuse = |var: &'static str, problem: String| {
        Outcome::Refused(Refusal {
            var,
            problem: format!("InfluxDB answered {status}: {message}{problem}"),
        })
    };
    let credentials = if v2 {
        "INFLUX_TOKEN"
    } else {
        "INFLUX_USER and INFLUX_PASSWORD"
    };
    let lower = message.to_ascii_lowercase();
    match status {
        401 => refuse(
            credentials,
            " — the credentials are wrong or missing".into(),
        ),
        403 => refuse(
            credentials,
            " — they may not write there: grant write access".into(),
        ),
        404 if lower.contains("database") => refuse(
            "INFLUX_DATABASE",
            " — create it (CREATE DATABASE …) or name one that exists".into(),
        ),
        404 if lower.contains("bucket") => refuse("INFLUX_BUCKET", " — create the bucket".into()),
        404 if lower.contains("org") => refuse("INFLUX_ORG", String::new()),
        404 => refuse(
            "INFLUX_URL",
            if v2 {
                " — no /api/v2/write here: a 1.x server before 1.8 takes INFLUX_DATABASE instead of INFLUX_BUCKET".into()
            } else {
                " — no /write here: is INFLUX_URL the InfluxDB's address (http://host:8086)?".into()
            },
        ),
        _ if lower.contains("retention policy") => refuse("INFLUX_RETENTION_POLICY", String::new()),
        400 if lower.contains("field type conflict") => {
            let var = if v2 {
                "INFLUX_BUCKET"
            } else {
                "INFLUX_DATABASE"
            };
            Outcome::Rejected(format!(
                "InfluxDB answered {status}: {message} — another program wrote these fields with another type: give jkmon a {} of its own ({var})",
                if v2 { "bucket" } else { "database" }
            ))
        }
        400 | 413 | 422 => Outcome::Rejected(format!("InfluxDB answered {status}: {message}")),
        408 | 429 | 500..=599 => Outcome::Away(format!("InfluxDB answered {status}: {message}")),
        _ => refuse("INFLUX_URL", String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_names_the_variable_that_fixes_it() {
        let var = |status, message: &str, v2| match classify(status, message, v2) {
            Outcome::Refused(r) => r.var,
            other => panic!("{status} {message}: {other:?}"),
        };
        assert_eq!(
            var(401, "authorization failed", false),
            "INFLUX_USER and INFLUX_PASSWORD"
        );
        assert_eq!(var(401, "unauthorized access", true), "INFLUX_TOKEN");
        assert_eq!(
            var(
                403,
                "\"reader\" user is not authorized to write to database \"x\"",
                false
            ),
            "INFLUX_USER and INFLUX_PASSWORD"
        );
        assert_eq!(
            var(404, "database not found: \"x\"", false),
            "INFLUX_DATABASE"
        );
        assert_eq!(var(404, "bucket \"jk\" not found", true), "INFLUX_BUCKET");
        assert_eq!(
            var(404, "organization name \"home\" not found", true),
            "INFLUX_ORG"
        );
        assert_eq!(var(404, "404 page not found", true), "INFLUX_URL");
        assert_eq!(
            var(500, "retention policy not found: week", false),
            "INFLUX_RETENTION_POLICY"
        );
    }

    #[test]
    fn busy_servers_are_away_and_bad_lines_rejected() {
        assert!(matches!(classify(503, "", false), Outcome::Away(_)));
        assert!(matches!(classify(429, "slow down", true), Outcome::Away(_)));
        assert!(matches!(
            classify(400, "partial write: unable to parse", false),
            Outcome::Rejected(_)
        ));
    }

    #[test]
    fn the_body_gives_influxdbs_own_words() {
        assert_eq!(
            message(r#"{"error":"database not found: \"x\""}"#),
            "database not found: \"x\""
        );
        assert_eq!(
            message(r#"{"code":"not found","message":"bucket not found"}"#),
            "bucket not found"
        );
        assert_eq!(message("  plain  "), "plain");
    }
}
