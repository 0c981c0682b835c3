//! The thin shell around rumqttc: connects (plain or TLS) with MQTT 5, leaves a last will,
//! reconnects with a capped, jittered backoff, and sends what the [`Publisher`] decides. Runs
//! beside the BMS sessions and never holds them up: it only reads the [`super::Feed`].
//!
//! Switch commands cannot cost the connection: jkmon subscribes only to the command topics of
//! the batteries it may switch, asks the broker (MQTT 5) never to send it a retained message
//! there and never a packet over [`MAX_INCOMING`] (the broker drops such a message, not the
//! link), and hands each command to the [`Controller`] in the order the broker delivers them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Filter, LastWill, Packet, Publish, RetainForwardRule,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inverter::InverterFeed;
use super::publisher::{Cause, Message, Publisher, OFFLINE};
use super::{BatteryFeed, Layout, MqttConfig};
use crate::control::{Controller, SetError, Source};
use crate::protocol::control::Setting;
use crate::transport::backoff::Backoff;

/// Reconnection delays: the first retry within a second, then at most one a minute.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How long a stopping jkmon waits for its "offline" to reach the broker.
const FLUSH: Duration = Duration::from_secs(3);
/// The largest packet jkmon takes from the broker (MQTT 5's Maximum Packet Size): it takes
/// only switch commands, a word each. The broker drops a larger message for jkmon (a 100 KB
/// retained payload a script left on a command topic) instead of jkmon dropping the link.
pub const MAX_INCOMING: u32 = 4 * 1024;
/// A connection that ends sooner than this after the broker accepted it does not reset the
/// back-off: a broker that accepts and drops jkmon again and again is retried ever more slowly.
const STABLE_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum MqttError {
    #[error("MQTT_CA_FILE={path}: {problem}")]
    CaFile { path: String, problem: String },
    #[error("no CA certificates for mqtts:// in the system store ({0}); install ca-certificates, or set MQTT_CA_FILE to the CA that signed the broker's certificate")]
    NoRoots(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// What the connection task reports.
enum Link {
    Up,
    Down { reason: String, retry_in: Duration },
}

/// The rustls configuration for `mqtts://`: the CA in `ca_file`, else the system's CAs.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, MqttError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |problem: String| MqttError::CaFile {
                path: path.display().to_string(),
                problem,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
            for cert in certs {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("holds no certificate".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_string(), ToString::to_string);
                return Err(MqttError::NoRoots(why));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The client options: who jkmon is, its last will (`None` for a probe, which must not mark
/// jkmon offline when it hangs up), its credentials and transport.
fn options(config: &MqttConfig, will: Option<&Layout>) -> Result<MqttOptions, MqttError> {
    let b = &config.broker;
    let id = match will {
        Some(_) => config.client_id.clone(),
        None => format!("{}-check", config.client_id),
    };
    let mut o = MqttOptions::new(id, b.host.clone(), b.port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_start(true);
    o.set_max_packet_size(Some(MAX_INCOMING));
    if let Some(layout) = will {
        o.set_last_will(LastWill::new(
            layout.status(),
            OFFLINE,
            QoS::AtLeastOnce,
            true,
            None,
        ));
    }
    if let Some(user) = &b.user {
        o.set_credentials(user.clone(), b.password.clone().unwrap_or_default());
    }
    if b.tls {
        let tls = tls_config(config.ca_file.as_deref())?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    }
    Ok(o)
}

/// A connection error in words, with the fix where there is one.
fn explain(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => "the broker refused the user name or password: check them in MQTT_URL".into(),
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadClientId | ConnectReturnCode::ClientIdentifierNotValid,
        ) => "the broker refused the client id: set another MQTT_CLIENT_ID".into(),
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::UnsupportedProtocolVersion | ConnectReturnCode::RefusedProtocolVersion,
        ) => "the broker does not speak MQTT 5: jkmon needs mosquitto 1.6 or later (or another MQTT 5 broker)".into(),
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: is the broker running, and is the port in MQTT_URL right?".into()
        }
        other => other.to_string(),
    }
}

/// Connects once and hangs up (`jkmon doctor`): `Ok` when the broker accepts jkmon, else
/// what went wrong, with the fix.
pub async fn probe(config: &MqttConfig, within: Duration) -> Result<(), String> {
    let options = options(config, None).map_err(|e| e.to_string())?;
    let (client, mut eventloop) = AsyncClient::new(options, 4);
    let connect = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(explain(&e)),
            }
        }
    };
    let result = tokio::time::timeout(within, connect)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", within.as_secs())));
    if result.is_ok() {
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    }
    result
}

/// Where switch commands go: the layout names the battery and the switch, the controller
/// takes them in order, `answered` hears of each answer from the BMS.
struct Commands {
    layout: Layout,
    control: Controller,
    answered: mpsc::UnboundedSender<()>,
}

/// Drives the connection (rumqttc's event loop) until `stop`: tells `links` when the broker
/// accepted jkmon and when the connection failed, reconnects after a backoff, and hands each
/// command to the controller right here, in the order the broker delivered them.
async fn drive(
    mut eventloop: rumqttc::v5::EventLoop,
    links: mpsc::Sender<Link>,
    commands: Commands,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX, u64::from(std::process::id()));
    let mut leaving = false;
    let mut accepted_at: Option<Instant> = None;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = stop.cancelled() => return,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                accepted_at = Some(Instant::now());
                if links.send(Link::Up).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => command(&commands, p),
            // the farewell is queued after everything else; the broker closes the connection
            // once it has read it (closing first would fire the last will)
            Ok(Event::Outgoing(Outgoing::Disconnect)) => leaving = true,
            Ok(_) => {}
            Err(_) if leaving => return,
            Err(e) => {
                // only a connection that held a while starts the back-off again
                if accepted_at
                    .take()
                    .is_some_and(|t| t.elapsed() >= STABLE_AFTER)
                {
                    backoff.reset();
                }
                let retry_in = backoff.next_delay();
                let _ = links.try_send(Link::Down {
                    reason: explain(&e),
                    retry_in,
                });
                tokio::select! {
                    _ = tokio::time::sleep(retry_in) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

/// What the publisher follows and serves: the batteries and the inverter as the service
/// knows them, and the switches it may set.
pub struct Inputs {
    pub feed: watch::Receiver<Vec<BatteryFeed>>,
    pub inverter: watch::Receiver<Option<InverterFeed>>,
    pub control: Controller,
}

/// One input of the publishing loop.
enum Input {
    Stop,
    Link(Option<Link>),
    /// The batteries changed (`false`: the service is gone).
    Feed(bool),
    Inverter(bool),
    /// A switch command was answered.
    Answered,
    Tick,
}

/// What the loop does next.
enum Step {
    Publish(Vec<Message>),
    Nothing,
    End,
}

/// The publishing side of one MQTT client: what it follows, what it published, and whether
/// the broker is there.
struct Publishing {
    client: AsyncClient,
    publisher: Publisher,
    feed: watch::Receiver<Vec<BatteryFeed>>,
    inverter: watch::Receiver<Option<InverterFeed>>,
    broker: String,
    command_topics: Vec<String>,
    connected: bool,
    failures: u32,
    /// Until then, each new state goes out at once (a command was just answered).
    prompt_until: Instant,
}

impl Publishing {
    async fn handle(&mut self, input: Input) -> Step {
        match input {
            Input::Stop | Input::Link(None) | Input::Feed(false) | Input::Inverter(false) => {
                Step::End
            }
            Input::Link(Some(Link::Up)) => Step::Publish(self.up().await),
            Input::Link(Some(Link::Down { reason, retry_in })) => {
                self.connected = false;
                self.failures += 1;
                tracing::warn!(
                    "mqtt: {}: {reason}; trying again in {:.1} s (failed attempts in a row: {})",
                    self.broker,
                    retry_in.as_secs_f64(),
                    self.failures
                );
                Step::Nothing
            }
            Input::Feed(true) => {
                let f = self.feed.borrow_and_update().clone();
                self.publish(|p| p.update(&f, Instant::now(), Cause::Change))
            }
            Input::Inverter(true) => {
                let f = self.inverter.borrow_and_update().clone();
                self.publish(|p| p.update_inverter(f.as_ref()))
            }
            // for a moment, each new state goes out at once, so Home Assistant sees the BMS's
            // answer rather than waiting for MQTT_STATE_SEC
            Input::Answered => {
                self.prompt_until = Instant::now() + PROMPT_FOR;
                Step::Nothing
            }
            Input::Tick => {
                let f = self.feed.borrow().clone();
                self.publish(|p| p.update(&f, Instant::now(), Cause::Tick))
            }
        }
    }

    /// What goes out while connected (nothing while not: the next connection sends all).
    fn publish(&mut self, what: impl FnOnce(&mut Publisher) -> Vec<Message>) -> Step {
        if self.connected {
            Step::Publish(what(&mut self.publisher))
        } else {
            Step::Nothing
        }
    }

    /// Connected: the commands subscribed, and everything known published.
    async fn up(&mut self) -> Vec<Message> {
        self.connected = true;
        self.failures = 0;
        subscribe_commands(&self.client, &self.command_topics).await;
        tracing::info!(
            "mqtt: connected to {}; publishing under {}/",
            self.broker,
            self.publisher.layout().base
        );
        let f = self.feed.borrow_and_update().clone();
        let mut out = self.publisher.connected(&f, Instant::now());
        out.extend(
            self.publisher
                .update_inverter(self.inverter.borrow_and_update().as_ref()),
        );
        out
    }
}

/// Publishes until `stop`; then tells the broker that every battery and jkmon are offline.
/// Fails only when the TLS set-up is impossible (a bad `MQTT_CA_FILE`).
pub async fn run(
    config: MqttConfig,
    layout: Layout,
    freshness: Duration,
    every: Duration,
    inputs: Inputs,
    stop: CancellationToken,
) -> Result<(), MqttError> {
    let Inputs {
        feed,
        inverter,
        control,
    } = inputs;
    let layout = layout.with_control(&control);
    let command_topics = layout.command_topics();
    let options = options(&config, Some(&layout))?;
    let broker = config.broker.to_string();
    let (client, eventloop) = AsyncClient::new(options, 64);
    let (link_tx, mut link_rx) = mpsc::channel::<Link>(16);
    let (answered_tx, mut answered) = mpsc::unbounded_channel::<()>();
    let commands = Commands {
        layout: layout.clone(),
        control,
        answered: answered_tx,
    };
    let connection_stop = CancellationToken::new();
    let connection = tokio::spawn(drive(eventloop, link_tx, commands, connection_stop.clone()));
    tracing::info!("mqtt: connecting to {broker} as {}", config.client_id);
    let mut p = Publishing {
        client,
        publisher: Publisher::new(layout, freshness),
        feed,
        inverter,
        broker,
        command_topics,
        connected: false,
        failures: 0,
        prompt_until: Instant::now(),
    };
    let mut prompt_tick = tokio::time::interval(PROMPT_EVERY);
    // idle between answers, not behind: no burst of the ticks missed meanwhile
    prompt_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let prompt = Instant::now() < p.prompt_until;
        let input = tokio::select! {
            _ = stop.cancelled() => Input::Stop,
            link = link_rx.recv() => Input::Link(link),
            changed = p.feed.changed() => Input::Feed(changed.is_ok()),
            Some(()) = answered.recv() => Input::Answered,
            _ = prompt_tick.tick(), if prompt => Input::Tick,
            changed = p.inverter.changed() => Input::Inverter(changed.is_ok()),
            _ = tick.tick() => Input::Tick,
        };
        let messages = match p.handle(input).await {
            Step::End => break,
            Step::Nothing => continue,
            Step::Publish(messages) => messages,
        };
        tokio::select! {
            _ = send(&p.client, messages) => {}
            _ = stop.cancelled() => break,
        }
    }
    if p.connected {
        let farewell = async {
            send(&p.client, p.publisher.stopping()).await;
            let _ = p.client.disconnect().await;
            let _ = connection.await;
        };
        if tokio::time::timeout(FLUSH, farewell).await.is_err() {
            tracing::warn!("mqtt: the broker did not take jkmon's \"offline\" within {FLUSH:?}; its last will says it instead");
        }
    }
    connection_stop.cancel();
    Ok(())
}

/// Subscribes to the switch command topics (a clean start forgets subscriptions: asked again
/// on each connection), never to their retained messages (they would switch the BMS again
/// each time).
async fn subscribe_commands(client: &AsyncClient, topics: &[String]) {
    let Some(first) = topics.first() else {
        return;
    };
    let filters = topics.iter().map(|t| Filter {
        path: t.clone(),
        qos: QoS::AtLeastOnce,
        nolocal: true,
        preserve_retain: false,
        retain_forward_rule: RetainForwardRule::Never,
    });
    match client.subscribe_many(filters).await {
        Err(e) => tracing::warn!("mqtt: could not subscribe to the switch commands: {e}"),
        Ok(()) => tracing::info!(
            "mqtt: switch commands taken on {} topic(s) like {first} (JK_BMS_CONTROL)",
            topics.len()
        ),
    }
}

/// After a command's answer, states that changed go out every `PROMPT_EVERY` for
/// `PROMPT_FOR`, whatever MQTT_STATE_SEC says.
const PROMPT_FOR: Duration = Duration::from_secs(3);
const PROMPT_EVERY: Duration = Duration::from_millis(250);

/// A switch command: `ON` or `OFF` on `<base>/batteryN/switch/<switch>/set`, taken by the
/// controller at once (the newest command for a switch wins) without holding the connection
/// up. A retained command is ignored: it would switch the BMS again at every reconnection
/// (jkmon asks the broker not to send those; this is for a broker that sends them all the
/// same). The entity's state follows the BMS's next report, whatever the outcome.
fn command(c: &Commands, p: Publish) {
    let topic = String::from_utf8_lossy(&p.topic);
    let Some((position, switch)) = c.layout.command(&topic) else {
        tracing::debug!("mqtt: {topic}: not a switch command jkmon takes");
        return;
    };
    // an empty payload is how owners clear a retained command: nothing was asked
    if p.payload.iter().all(u8::is_ascii_whitespace) {
        tracing::debug!("mqtt: {topic}: an empty command, nothing to do");
        return;
    }
    if p.retain {
        tracing::warn!(
            "mqtt: {topic}: a retained command is ignored (it would be set again at every reconnection); publish it without retain"
        );
        return;
    }
    let word = String::from_utf8_lossy(&p.payload)
        .trim()
        .to_ascii_lowercase();
    let on = match word.as_str() {
        "on" | "1" | "true" => true,
        "off" | "0" | "false" => false,
        _ => {
            tracing::warn!("mqtt: {topic}: {word:?} is neither ON nor OFF");
            return;
        }
    };
    // asked here, in the order the broker delivered the commands: the newest wins
    let answer = match c
        .control
        .ask(position, Setting { switch, on }, Source::Mqtt)
    {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!("mqtt: {topic}: {e}");
            return;
        }
    };
    let answered = c.answered.clone();
    tokio::spawn(async move {
        // the controller logs and records the outcome; a command a newer one replaced needs
        // no prompt state
        if let Ok(Ok(())) | Ok(Err(SetError::Write { .. })) = answer.await {
            let _ = answered.send(());
        }
    });
}

/// Queues `messages` in order; waits while the queue is full (the connection task empties it).
async fn send(client: &AsyncClient, messages: Vec<Message>) {
    for m in messages {
        // retained facts must arrive; a non-retained payload is replaced at the next interval
        let qos = if m.retain {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        if let Err(e) = client.publish(m.topic, qos, m.retain, m.payload).await {
            tracing::warn!("mqtt: could not queue a message: {e}");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_not_pem_is_named() {
        let dir = std::env::temp_dir().join(format!("jkmon-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate").unwrap();
        let e = tls_config(Some(&dir)).unwrap_err().to_string();
        std::fs::remove_file(&dir).ok();
        assert!(e.starts_with("MQTT_CA_FILE="), "{e}");
        assert!(e.contains("no certificate"), "{e}");
    }

    #[test]
    fn refusals_are_explained_with_the_fix() {
        let e = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        assert!(explain(&e).contains("MQTT_URL"));
        let e = ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(explain(&e).contains("is the broker running"));
    }
}
