//! The connections: jkmon's own accept loop on hyper, so that nothing a client does can hold
//! the process or its file descriptors.
//!
//! - A request head must arrive within [`HEAD_TIMEOUT`] (idle keep-alive connections count as
//!   waiting for one), so idle or one-byte-a-second connections are closed.
//! - A client (an IP address) holds at most [`PER_CLIENT`] connections at once; more are closed
//!   at once, with a log line (once a minute per client).
//! - A write that waits [`WRITE_TIMEOUT`] for the client to read closes the connection: a
//!   client that stops reading a streamed answer holds no reader, thread or database
//!   connection of the service's.
//! - On stop every connection is asked to finish (open event streams end, see
//!   [`super::AppState::shutdown`]); whatever is still open after [`STOP_GRACE`] — a client
//!   that stopped reading — is dropped, so the service exits within seconds whatever the
//!   browsers do.
//!
//! Each request carries its peer's address ([`axum::extract::ConnectInfo`]) for the login
//! throttle.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

/// How long a client may take to send a request head (or stay idle between requests).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections one IP address may hold at once (browsers open about six; a dashboard keeps one
/// event stream).
pub const PER_CLIENT: usize = 64;
/// How long connections get to finish when the service stops.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Open connections per client, and when each was last told about the cap or a timeout.
#[derive(Default)]
struct Clients {
    open: HashMap<IpAddr, usize>,
    told: HashMap<IpAddr, Instant>,
    told_timeout: HashMap<IpAddr, Instant>,
}

/// Whether `ip` is due to be told again (once a minute per client), noting that it is now.
fn due(told: &mut HashMap<IpAddr, Instant>, ip: IpAddr, now: Instant) -> bool {
    if told
        .get(&ip)
        .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(60))
    {
        return false;
    }
    told.retain(|_, t| now.duration_since(*t) < Duration::from_secs(600));
    told.insert(ip, now);
    true
}

/// Says that `ip` sent no complete request in time, once a minute per client.
fn note_timeout(clients: &Arc<Mutex<Clients>>, ip: IpAddr) {
    let mut c = clients.lock().expect("clients lock");
    if due(&mut c.told_timeout, ip, Instant::now()) {
        tracing::info!(
            "web: closed a connection from {ip} that sent no complete request within {} s (said once a minute per client)",
            HEAD_TIMEOUT.as_secs()
        );
    }
}

/// One admitted connection; dropping it frees its place.
struct Place {
    clients: Arc<Mutex<Clients>>,
    ip: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut c = self.clients.lock().expect("clients lock");
        if let Some(n) = c.open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.open.remove(&self.ip);
            }
        }
    }
}

fn admit(clients: &Arc<Mutex<Clients>>, ip: IpAddr) -> Option<Place> {
    let mut c = clients.lock().expect("clients lock");
    let n = c.open.entry(ip).or_insert(0);
    if *n >= PER_CLIENT {
        if due(&mut c.told, ip, Instant::now()) {
            tracing::warn!(
                "web: {ip} holds {PER_CLIENT} connections already; further ones are closed at once (said once a minute)"
            );
        }
        return None;
    }
    *n += 1;
    Some(Place {
        clients: clients.clone(),
        ip,
    })
}

/// How often, at most, the memory of a burst of requests goes back to the system.
pub const TRIM_EVERY: Duration = Duration::from_secs(20);

/// How long a write to a client may wait for it to read before the server closes the
/// connection. A client that stops reading a streamed answer (`/history`, an event stream)
/// holds nothing of the service's for longer: the reader behind it stops, its database
/// connection and blocking thread come back.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection whose writes fail with `TimedOut` after [`WRITE_TIMEOUT`] without progress.
struct WriteTimeout<S> {
    inner: S,
    /// Set while a write waits for the client.
    waiting: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteTimeout<S> {
    fn new(inner: S) -> Self {
        WriteTimeout {
            inner,
            waiting: None,
        }
    }

    /// What a write or a flush of the inner stream gave, as this connection answers it:
    /// progress ends the wait; `Pending` stays pending until it has waited [`WRITE_TIMEOUT`],
    /// then fails with `TimedOut`.
    fn guard<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if !polled.is_pending() {
            self.waiting = None;
            return polled;
        }
        let sleep = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
        match std::future::Future::poll(sleep.as_mut(), cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteTimeout<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard(cx, polled)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_flush(cx);
        this.guard(cx, polled)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `stop` fires, then ends every connection within
/// [`STOP_GRACE`].
pub async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let clients = Arc::new(Mutex::new(Clients::default()));
    let mut connections = tokio::task::JoinSet::new();
    // after a burst, the memory its requests used goes back to the system (glibc keeps freed
    // memory otherwise): at most every TRIM_EVERY, only when connections came meanwhile
    let mut trim = tokio::time::interval(TRIM_EVERY);
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut accepted_since_trim = false;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            _ = trim.tick() => {
                if std::mem::take(&mut accepted_since_trim) {
                    tokio::task::spawn_blocking(crate::store::trim_heap);
                }
                continue;
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of file descriptors, mostly: say so and let some close
                    tracing::warn!("web: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        accepted_since_trim = true;
        let Some(place) = admit(&clients, peer.ip()) else {
            drop(stream);
            continue;
        };
        connections.spawn(serve(
            stream,
            peer,
            place,
            app.clone(),
            stop.clone(),
            clients.clone(),
        ));
    }
    drop(listener);
    let drained = tokio::time::timeout(STOP_GRACE + Duration::from_millis(500), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    Ok(())
}

/// Serves one connection until it ends, or until `stop` and then [`STOP_GRACE`]; `place` is
/// its client's place among [`PER_CLIENT`], given back when it ends.
async fn serve(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    place: Place,
    app: Router,
    stop: CancellationToken,
    clients: Arc<Mutex<Clients>>,
) {
    let _place = place;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        tower::ServiceExt::oneshot(app.clone(), req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(WriteTimeout::new(stream)), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(STOP_GRACE, conn.as_mut()).await {
                Ok(ended) => ended,
                Err(_) => return, // a client that stopped reading: dropped
            }
        }
    };
    if let Err(e) = ended {
        if e.is_timeout() {
            note_timeout(&clients, peer.ip());
        } else {
            tracing::debug!("web: connection from {peer}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_share_and_places_come_back() {
        let clients = Arc::new(Mutex::new(Clients::default()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<Place> = (0..PER_CLIENT)
            .map(|_| admit(&clients, a).expect("within the share"))
            .collect();
        assert!(admit(&clients, a).is_none(), "over the share");
        assert!(
            admit(&clients, b).is_some(),
            "another client is not affected"
        );
        drop(held);
        assert!(admit(&clients, a).is_some());
        assert_eq!(clients.lock().unwrap().open.get(&b), None);
    }
}
