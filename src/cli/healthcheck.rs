//! `jkmon healthcheck`: asks the running jkmon's `/api/v1/health` (on `WEB_BIND`, through
//! 127.0.0.1 when it listens on every interface) and exits 0 when every BMS is fresh, 1 with
//! the reasons otherwise — for Docker's `HEALTHCHECK` and for monitoring scripts.

use crate::web::messages::Health;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::HealthcheckArgs;
use crate::config::Config;

const TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let mut addr: SocketAddr = config.web.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut stream = match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("unhealthy: nothing answers on {addr} (WEB_BIND): {e}; is jkmon running?");
            return Ok(ExitCode::FAILURE);
        }
    };
    stream.set_read_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET /api/v1/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading the answer of {addr}"))?;
    let code = response.get(9..12).unwrap_or("");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    if code == "200" {
        if !args.quiet {
            println!("healthy: {}", body.trim());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let problems = match serde_json::from_str::<Health>(body) {
        Ok(Health::Unhealthy { problems }) => problems.join("; "),
        _ => body.trim().to_string(),
    };
    eprintln!("unhealthy (HTTP {code}): {problems}");
    Ok(ExitCode::FAILURE)
}
