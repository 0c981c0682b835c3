//! What to publish, and when: a pure state machine over the feed. The client calls it on
//! every (re)connection, on every feed change and on every tick of the poll interval; it
//! answers with the messages to send, and remembers what the broker has been told so that
//! nothing goes out twice and nothing is missed after a reconnection.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::inverter::{self, InverterFeed};
use super::{discovery, payload, BatteryFeed, Layout};

/// One MQTT message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Message {
    fn retained(topic: String, payload: impl Into<Vec<u8>>) -> Message {
        Message {
            topic,
            payload: payload.into(),
            retain: true,
        }
    }
    fn json(topic: String, value: &serde_json::Value, retain: bool) -> Message {
        Message {
            topic,
            payload: serde_json::to_vec(value).unwrap_or_default(),
            retain,
        }
    }
}

pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";

/// What the broker was told about one battery on this connection.
#[derive(Debug, Clone, Default)]
struct Told {
    online: Option<bool>,
    seq: u64,
    /// The discovery topics, and the shape of the battery they were built for.
    discovery: Vec<String>,
    discovery_shape: Option<String>,
    device: Option<Vec<u8>>,
    /// The last state sent, less what changes with every frame, and when it was sent.
    state: Option<(Vec<u8>, Instant)>,
}

/// An unchanged state goes out again after this long, so a broker or a dashboard that lost it
/// gets it back.
pub const STATE_REFRESH: Duration = Duration::from_secs(60);

/// The state's fields that change with every frame whatever the battery does: the frame
/// counter and the BMS's uptime. They do not make a state "changed".
const VOLATILE: [&str; 3] = ["counter", "uptime_s", "bms_started_at"];

/// What decides whether a state changed: its JSON without [`VOLATILE`] fields.
fn state_key(state: &serde_json::Value) -> Vec<u8> {
    let mut key = state.clone();
    if let Some(map) = key.as_object_mut() {
        for field in VOLATILE {
            map.remove(field);
        }
    }
    serde_json::to_vec(&key).unwrap_or_default()
}

/// Why [`Publisher::update`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// `MQTT_STATE_SEC` ticked: states that changed (or were last sent a minute ago) go out.
    Tick,
    /// The feed changed (a battery appeared, was lost or came back): availability goes out at
    /// once, with the snapshot of a battery that came online.
    Change,
}

pub struct Publisher {
    layout: Layout,
    /// A snapshot older than this makes its battery offline.
    freshness: Duration,
    told: Vec<Told>,
    /// Each battery's discovery node ([`discovery::node_id`]) once chosen, for this process's
    /// life (a reconnection keeps it), and when its first snapshot came.
    nodes: Vec<Option<String>>,
    first_snapshot: Vec<Option<Instant>>,
    /// Each battery's states so far as one ([`payload::remember`]), for this process's life:
    /// its entities, and the keys every state carries (null where not reported).
    reported: Vec<Value>,
    /// What the broker was told about jkmon's own inverter poller on this connection.
    told_inverter: ToldInverter,
}

#[derive(Debug, Clone, Default)]
struct ToldInverter {
    online: Option<bool>,
    seq: u64,
    discovery: bool,
    /// The link JSON last sent.
    link: Option<Value>,
}

/// How long discovery waits for a battery's device info (its serial number keys the device)
/// before it keys the device on the battery's address instead.
pub const DEVICE_INFO_WAIT: Duration = Duration::from_secs(60);

impl Publisher {
    pub fn new(layout: Layout, freshness: Duration) -> Publisher {
        let n = layout.batteries.len();
        Publisher {
            layout,
            freshness,
            told: vec![Told::default(); n],
            nodes: vec![None; n],
            first_snapshot: vec![None; n],
            reported: vec![Value::Null; n],
            told_inverter: ToldInverter::default(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A new connection: the broker may have lost everything (a restart without persistence),
    /// so everything is told again: jkmon is online, then each battery as in `update`.
    pub fn connected(&mut self, feed: &[BatteryFeed], now: Instant) -> Vec<Message> {
        self.told = vec![Told::default(); self.layout.batteries.len()];
        self.told_inverter = ToldInverter::default();
        let mut out = vec![Message::retained(self.layout.status(), ONLINE)];
        out.extend(self.update(feed, now, Cause::Tick));
        out
    }

    /// Whether battery `feed` counts as online at `now`.
    pub fn online(&self, feed: &BatteryFeed, now: Instant) -> bool {
        !feed.lost
            && feed
                .taken_at
                .is_some_and(|t| now.saturating_duration_since(t) <= self.freshness)
    }

    /// The messages that bring the broker up to date with `feed`.
    pub fn update(&mut self, feed: &[BatteryFeed], now: Instant, cause: Cause) -> Vec<Message> {
        let mut out = Vec::new();
        let now_local = chrono::Local::now();
        for (i, b) in feed.iter().enumerate().take(self.told.len()) {
            let online = self.online(b, now);
            let came_online = online && self.told[i].online != Some(true);
            if let Some(snapshot) = &b.snapshot {
                let fresh = b.seq != self.told[i].seq;
                if fresh && (cause == Cause::Tick || came_online) {
                    let mut state = payload::state(snapshot, b.energy.as_ref(), now_local, online);
                    payload::remember(&mut self.reported[i], &state);
                    payload::fill_unreported(&mut state, &self.reported[i]);
                    let reported = self.reported[i].clone();
                    self.discovery(i, &reported, snapshot, now, &mut out);
                    if let Some(device) = payload::device(snapshot) {
                        let bytes = serde_json::to_vec(&device).unwrap_or_default();
                        if self.told[i].device.as_ref() != Some(&bytes) {
                            out.push(Message::retained(
                                self.layout.batteries[i].device(),
                                bytes.clone(),
                            ));
                            self.told[i].device = Some(bytes);
                        }
                    }
                    let key = state_key(&state);
                    let due = came_online
                        || self.told[i].state.as_ref().is_none_or(|(last, at)| {
                            *last != key || now.saturating_duration_since(*at) >= STATE_REFRESH
                        });
                    if due {
                        out.push(Message::json(
                            self.layout.batteries[i].state(),
                            &state,
                            true,
                        ));
                        self.told[i].state = Some((key, now));
                    }
                    if self.layout.nodejkbms {
                        let (pack, cells) = self.layout.nodejkbms(i);
                        out.push(Message::json(
                            pack,
                            &payload::nodejkbms_pack(snapshot),
                            false,
                        ));
                        out.push(Message::json(
                            cells,
                            &payload::nodejkbms_cells(snapshot),
                            false,
                        ));
                    }
                    self.told[i].seq = b.seq;
                }
            }
            if self.told[i].online != Some(online) {
                let word = if online { ONLINE } else { OFFLINE };
                out.push(Message::retained(
                    self.layout.batteries[i].availability(),
                    word,
                ));
                self.told[i].online = Some(online);
            }
        }
        out
    }

    /// The discovery configs of battery `i` when they differ from what was told; entities that
    /// disappeared (fewer cells, a probe unplugged) are removed with an empty retained config.
    fn discovery(
        &mut self,
        i: usize,
        state: &serde_json::Value,
        snapshot: &crate::battery::Snapshot,
        now: Instant,
        out: &mut Vec<Message>,
    ) {
        let Some(prefix) = self.layout.discovery_prefix.clone() else {
            return;
        };
        let info = snapshot.device_info.as_ref();
        let Some(node) = self.node(i, info, now) else {
            return;
        };
        // the configs follow from the shape alone: build them only when it changed
        let shape = format!("{node}|{}", discovery::shape(state, info));
        if self.told[i].discovery_shape.as_ref() == Some(&shape) {
            return;
        }
        let topics = &self.layout.batteries[i];
        let configs = discovery::configs(&self.layout, &prefix, topics, &node, state, info);
        let told = &mut self.told[i];
        let topics: Vec<String> = configs.iter().map(|(t, _)| t.clone()).collect();
        for gone in told.discovery.iter().filter(|t| !topics.contains(t)) {
            out.push(Message::retained(gone.clone(), Vec::new()));
        }
        // switches an earlier run offered (control on then) go when this one does not
        if self.layout.batteries[i].control.is_none() && told.discovery.is_empty() {
            for switch in crate::protocol::control::Switch::ALL {
                out.push(Message::retained(
                    discovery::switch_topic(&prefix, &node, switch),
                    Vec::new(),
                ));
            }
        }
        out.extend(
            configs
                .iter()
                .map(|(t, v)| Message::json(t.clone(), v, true)),
        );
        told.discovery = topics;
        told.discovery_shape = Some(shape);
    }

    /// Battery `i`'s discovery node: keyed on its serial number when the BMS reports one (and
    /// no other battery reports the same); on its address when it reports none, or has not
    /// said who it is within [`DEVICE_INFO_WAIT`] of its first snapshot. `None`: wait.
    fn node(
        &mut self,
        i: usize,
        info: Option<&crate::protocol::DeviceInfo>,
        now: Instant,
    ) -> Option<String> {
        let first = *self.first_snapshot[i].get_or_insert(now);
        let topics = &self.layout.batteries[i];
        let by_address = discovery::node_id(topics, None);
        let node = match (info, discovery::serial_of(info)) {
            (_, Some(serial)) => {
                let by_serial = discovery::node_id(topics, Some(serial));
                let taken = (0..self.nodes.len())
                    .any(|j| j != i && self.nodes[j].as_ref() == Some(&by_serial));
                if !taken {
                    by_serial
                } else {
                    if self.nodes[i].is_none() {
                        tracing::warn!(
                            "{}: its BMS reports the serial number {serial}, like another battery; its Home Assistant device is keyed on its address instead",
                            topics.name
                        );
                    }
                    by_address
                }
            }
            (Some(_), None) => by_address,
            // not said yet: keep what was chosen, or wait a while for it
            (None, None) if self.nodes[i].is_some() => return self.nodes[i].clone(),
            (None, None) if now.saturating_duration_since(first) < DEVICE_INFO_WAIT => return None,
            (None, None) => by_address,
        };
        self.nodes[i] = Some(node.clone());
        Some(node)
    }

    /// The messages that bring the broker up to date with jkmon's own inverter poller: the
    /// inverter's device once per connection, its values at each poll (never before the
    /// first), its link when that changes, its availability when that changes.
    pub fn update_inverter(&mut self, feed: Option<&InverterFeed>) -> Vec<Message> {
        let Some(feed) = feed else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let told = &mut self.told_inverter;
        if let (Some(prefix), false) = (&self.layout.discovery_prefix, told.discovery) {
            out.extend(
                inverter::configs(&self.layout, prefix, feed)
                    .iter()
                    .map(|(t, v)| Message::json(t.clone(), v, true)),
            );
            told.discovery = true;
        }
        let online = feed.online();
        let link = inverter::link(feed);
        if told.link.as_ref() != Some(&link) {
            out.push(Message::json(
                inverter::link_topic(&self.layout),
                &link,
                true,
            ));
            told.link = Some(link);
        }
        if feed.seq != told.seq {
            if let Some(state) = inverter::state(feed) {
                out.push(Message::json(
                    inverter::state_topic(&self.layout),
                    &state,
                    true,
                ));
            }
            told.seq = feed.seq;
        }
        if told.online != Some(online) {
            let word = if online { ONLINE } else { OFFLINE };
            out.push(Message::retained(
                inverter::availability_topic(&self.layout),
                word,
            ));
            told.online = Some(online);
        }
        out
    }

    /// jkmon is stopping: every battery, the inverter it polls and jkmon itself go offline.
    pub fn stopping(&mut self) -> Vec<Message> {
        let mut out: Vec<Message> = self
            .layout
            .batteries
            .iter()
            .map(|b| Message::retained(b.availability(), OFFLINE))
            .collect();
        if self.told_inverter.online.is_some() {
            out.push(Message::retained(
                inverter::availability_topic(&self.layout),
                OFFLINE,
            ));
        }
        out.push(Message::retained(self.layout.status(), OFFLINE));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::{Snapshot, SocSource};
    use crate::mqtt::BatteryTopics;
    use crate::protocol::CellInfo;
    use std::sync::Arc;

    fn layout(batteries: usize, nodejkbms: bool) -> Layout {
        Layout {
            base: "jk".into(),
            batteries: (1..=batteries)
                .map(|p| BatteryTopics::new("jk", p, &format!("B{p}"), None))
                .collect(),
            discovery_prefix: Some("homeassistant".into()),
            nodejkbms,
            dashboard_url: None,
        }
    }

    fn feed(seq: u64, at: Instant, cells: usize) -> BatteryFeed {
        feed_of(seq, at, cells, |_| {})
    }

    fn feed_of(seq: u64, at: Instant, cells: usize, edit: impl Fn(&mut CellInfo)) -> BatteryFeed {
        let mut c = CellInfo::example();
        edit(&mut c);
        c.cell_voltages_uv.truncate(cells);
        c.cell_resistances_uohm.truncate(cells);
        BatteryFeed {
            snapshot: Some(Arc::new(Snapshot {
                soc_effective_pct: Some(50.0),
                soc_source: SocSource::Bms,
                cell_info: c,
                device_info: Some(crate::protocol::DeviceInfo {
                    serial_number: "4042313022".into(),
                    ..Default::default()
                }),
                settings: None,
            })),
            taken_at: Some(at),
            seq,
            lost: false,
            energy: None,
        }
    }

    /// `feed` without device info, or with the serial number `sn`.
    fn with_serial(mut f: BatteryFeed, sn: Option<&str>) -> BatteryFeed {
        let mut s = (**f.snapshot.as_ref().unwrap()).clone();
        s.device_info = sn.map(|sn| crate::protocol::DeviceInfo {
            serial_number: sn.into(),
            ..Default::default()
        });
        f.snapshot = Some(Arc::new(s));
        f
    }

    /// The discovery topics among `messages`, and those among them emptied (removed).
    fn discovery_topics(messages: &[Message]) -> (Vec<String>, Vec<String>) {
        let of = |empty: bool| {
            messages
                .iter()
                .filter(|m| m.topic.starts_with("homeassistant/") && m.payload.is_empty() == empty)
                .map(|m| m.topic.clone())
                .collect()
        };
        (of(false), of(true))
    }

    #[test]
    fn discovery_keys_devices_on_the_serial_number_and_waits_a_while_for_it() {
        let t0 = Instant::now();
        let mut p = Publisher::new(layout(2, false), Duration::from_secs(600));
        // battery 1 reports its serial number; battery 2 has not said who it is yet
        let feeds = |seq, at, sn2: Option<&str>| {
            [
                with_serial(feed(seq, at, 4), Some("4042313022")),
                with_serial(feed(seq, at, 4), sn2),
            ]
        };
        let first = p.connected(&feeds(1, t0, None), t0);
        let (published, _) = discovery_topics(&first);
        assert!(!published.is_empty());
        assert!(
            published
                .iter()
                .all(|t| t.contains("/jkmon_sn_4042313022/")),
            "only battery 1, by its serial number: {published:?}"
        );
        // within the wait: battery 2 still waits
        let at = t0 + DEVICE_INFO_WAIT / 2;
        let (published, _) = discovery_topics(&p.update(&feeds(2, at, None), at, Cause::Tick));
        assert!(published.is_empty(), "{published:?}");
        // after it: battery 2 on its address (base topic and position here)
        let at = t0 + DEVICE_INFO_WAIT;
        let (published, _) = discovery_topics(&p.update(&feeds(3, at, None), at, Cause::Tick));
        assert!(!published.is_empty());
        assert!(
            published.iter().all(|t| t.contains("/jkmon_jk_battery2/")),
            "{published:?}"
        );
        // it reports the same serial number as battery 1: it keeps its address
        let at = at + Duration::from_secs(1);
        let same = feeds(4, at, Some("4042313022"));
        let (published, removed) = discovery_topics(&p.update(&same, at, Cause::Tick));
        assert!(published.iter().all(|t| !t.contains("sn_")) && removed.is_empty());
        // a serial number of its own, late: its device moves to it, the old topics emptied
        let at = at + Duration::from_secs(1);
        let own = feeds(5, at, Some("5082B12345"));
        let (published, removed) = discovery_topics(&p.update(&own, at, Cause::Tick));
        assert!(published
            .iter()
            .all(|t| t.contains("/jkmon_sn_5082b12345/")));
        assert!(!removed.is_empty() && removed.iter().all(|t| t.contains("/jkmon_jk_battery2/")));
        // a reconnection tells the same nodes again, without waiting
        let at = at + Duration::from_secs(1);
        let (published, _) = discovery_topics(&p.connected(&feeds(6, at, None), at));
        assert!(
            published
                .iter()
                .any(|t| t.contains("/jkmon_sn_5082b12345/")),
            "{published:?}"
        );
    }

    #[test]
    fn a_bms_that_reports_no_serial_number_is_keyed_on_its_address_at_once() {
        let now = Instant::now();
        let mut p = Publisher::new(layout(1, false), Duration::from_secs(60));
        let placeholder = with_serial(feed(1, now, 4), Some("Input Us"));
        let (published, _) = discovery_topics(&p.connected(&[placeholder], now));
        assert!(!published.is_empty());
        assert!(
            published.iter().all(|t| t.contains("/jkmon_jk_battery1/")),
            "{published:?}"
        );
    }

    fn topics(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.topic.as_str()).collect()
    }

    #[test]
    fn a_connection_tells_everything_then_only_news_goes_out() {
        let now = Instant::now();
        let mut p = Publisher::new(layout(1, false), Duration::from_secs(60));
        let first = p.connected(&[feed(1, now, 4)], now);
        assert_eq!(first[0].topic, "jk/status");
        assert_eq!(first[0].payload, b"online");
        let t = topics(&first);
        let discovery = t.iter().filter(|t| t.starts_with("homeassistant/")).count();
        assert!(discovery > 20, "{t:?}");
        // discovery before the state, the state before the availability
        let pos = |topic: &str| t.iter().position(|x| *x == topic).unwrap();
        assert!(pos("jk/battery1/state") > 1);
        assert!(pos("jk/battery1/availability") > pos("jk/battery1/state"));
        assert!(first.iter().all(|m| m.retain));
        // the same snapshot again: nothing
        assert!(p.update(&[feed(1, now, 4)], now, Cause::Tick).is_empty());
        // a new frame with the same values (only its counter and the uptime moved): nothing
        let next_frame = |seq: u64| {
            feed_of(seq, now, 4, move |c| {
                c.counter = c.counter.wrapping_add(seq as u8);
                c.uptime_s = c.uptime_s.map(|u| u + seq as u32);
            })
        };
        assert!(p.update(&[next_frame(2)], now, Cause::Tick).is_empty());
        // a changed value: the state only
        let charging = feed_of(3, now, 4, |c| c.current_ma = Some(12_000));
        assert_eq!(
            topics(&p.update(&[charging], now, Cause::Tick)),
            ["jk/battery1/state"]
        );
        // a change between ticks does not send the state
        assert!(p.update(&[feed(3, now, 4)], now, Cause::Change).is_empty());
        // a reconnection tells it all again
        let again = p.connected(&[feed(3, now, 4)], now);
        assert_eq!(topics(&again).len(), t.len());
    }

    /// An unchanged state goes out again once a minute, not at every tick.
    #[test]
    fn an_unchanged_state_is_repeated_once_a_minute() {
        let t0 = Instant::now();
        let mut p = Publisher::new(layout(1, false), Duration::from_secs(600));
        p.connected(&[feed(1, t0, 4)], t0);
        let mut sent = 0;
        // ticks every 5 s for two minutes, a new frame (same values) each time
        for k in 1..=24u64 {
            let at = t0 + Duration::from_secs(5 * k);
            let out = p.update(&[feed(k + 1, at, 4)], at, Cause::Tick);
            sent += topics(&out)
                .iter()
                .filter(|t| **t == "jk/battery1/state")
                .count();
        }
        assert_eq!(sent, 2, "at 60 s and 120 s");
    }

    #[test]
    fn silence_and_loss_make_a_battery_offline_and_a_new_snapshot_brings_it_back() {
        let t0 = Instant::now();
        let mut p = Publisher::new(layout(2, false), Duration::from_secs(10));
        p.connected(&[feed(1, t0, 4), feed(1, t0, 4)], t0);
        // battery 2 stays silent past the freshness
        let later = t0 + Duration::from_secs(11);
        let out = p.update(&[feed(2, later, 4), feed(1, t0, 4)], later, Cause::Change);
        let m = out
            .iter()
            .find(|m| m.topic == "jk/battery2/availability")
            .unwrap();
        assert_eq!(m.payload, b"offline");
        assert!(!topics(&out).contains(&"jk/battery1/availability"));
        // battery 1's session says lost: offline at once, fresh snapshot or not
        let mut lost = feed(2, later, 4);
        lost.lost = true;
        let out = p.update(&[lost, feed(1, t0, 4)], later, Cause::Change);
        assert_eq!(topics(&out), ["jk/battery1/availability"]);
        assert_eq!(out[0].payload, b"offline");
        // it comes back: its snapshot and availability go out without waiting for the tick
        let out = p.update(&[feed(3, later, 4), feed(1, t0, 4)], later, Cause::Change);
        assert_eq!(
            topics(&out),
            ["jk/battery1/state", "jk/battery1/availability"]
        );
        assert_eq!(out[1].payload, b"online");
        let stop = p.stopping();
        assert_eq!(
            topics(&stop),
            [
                "jk/battery1/availability",
                "jk/battery2/availability",
                "jk/status"
            ]
        );
        assert!(stop.iter().all(|m| m.payload == b"offline" && m.retain));
    }

    #[test]
    fn a_cell_not_reported_is_unknown_not_removed() {
        let now = Instant::now();
        let mut p = Publisher::new(layout(1, false), Duration::from_secs(60));
        p.connected(&[feed(1, now, 4)], now);
        // a frame with three cells: no entity goes, none is announced again, and the fourth
        // cell's value is null (unknown in Home Assistant, never its last value)
        let out = p.update(&[feed(2, now, 3)], now, Cause::Tick);
        assert!(
            !out.iter().any(|m| m.payload.is_empty()),
            "{:?}",
            topics(&out)
        );
        assert!(!out.iter().any(|m| m.topic.ends_with("/config")));
        let state = out.iter().find(|m| m.topic == "jk/battery1/state").unwrap();
        let state: Value = serde_json::from_slice(&state.payload).unwrap();
        let cells = state["cell_voltages_v"].as_array().unwrap();
        assert_eq!(cells.len(), 4);
        assert_eq!(cells[3], Value::Null);
        assert!(cells[2].is_number());
    }

    #[test]
    fn nodejkbms_payloads_go_right_under_the_base_for_one_battery() {
        let now = Instant::now();
        let mut p = Publisher::new(layout(1, true), Duration::from_secs(60));
        let out = p.connected(&[feed(1, now, 4)], now);
        let pack = out.iter().find(|m| m.topic == "jk/pack").unwrap();
        assert!(!pack.retain);
        assert!(topics(&out).contains(&"jk/cells"));
        let two = layout(2, true);
        assert_eq!(two.nodejkbms(1).0, "jk/battery2/pack");
    }
}
