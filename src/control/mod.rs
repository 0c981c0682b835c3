//! Control: the one way every interface — `jkmon set` (through the API), the API and the
//! dashboard's form, MQTT command topics, the bot's `/switch` — switches a BMS.
//!
//! A [`Controller`] knows, per battery, whether `JK_BMS_CONTROL` lets jkmon switch it and the
//! channel to the session that holds its link ([`crate::session::control`]). [`Controller::set`]
//! checks the battery and the switch, hands the write to the session, waits for the BMS's own
//! settings frame to confirm it, then logs and records the outcome (who asked, what, when) in
//! the database. Nothing here talks to a BMS itself.
//!
//! Layer 5: uses `session` and `store`, below it; the views (`web`, `mqtt`, `bot`) use it, and `service`
//! builds it.

pub mod lane;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use thiserror::Error;
use tokio::sync::oneshot;

use lane::{Ask, Lane, Next};

use crate::protocol::control::{self as protocol, Setting, Switch};
use crate::protocol::Variant;
pub use crate::session::control::WriteError;
use crate::session::control::{self as session, Writes};
use crate::store::switches::WriteRecord;
use crate::store::writer::{Message, WriterSender};

pub use crate::store::switches::Source;

/// How a battery's writes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteLink {
    /// The BLE command (also the simulated BMS).
    Bluetooth,
    /// Modbus FC 0x10 on the JK-PB RS485 network.
    Rs485,
}

impl WriteLink {
    /// Whether `switch` can be set over this link on some board.
    pub fn can_set_somewhere(self, switch: Switch) -> bool {
        [Variant::Jk02_24s, Variant::Jk02_32s, Variant::Jk04]
            .into_iter()
            .any(|v| self.can_set(Some(v), switch))
    }

    /// Whether `switch` can be set on a `variant` board over this link.
    pub fn can_set(self, variant: Option<Variant>, switch: Switch) -> bool {
        match self {
            WriteLink::Bluetooth => {
                variant.is_some_and(|v| protocol::ble_register(v, switch).is_ok())
            }
            WriteLink::Rs485 => protocol::rs485_register(switch).is_ok(),
        }
    }
}

/// One battery as control sees it.
#[derive(Debug, Clone)]
pub struct Slot {
    /// 1-based, as everywhere in jkmon.
    pub position: usize,
    pub name: String,
    /// `bms_devices.device_key`: the records are kept by it.
    pub device_key: String,
    /// `JK_BMS_CONTROL` lets jkmon switch it.
    pub allowed: bool,
    /// How its writes travel; `None` where the link takes none (the serial 4E 57 port).
    pub link: Option<WriteLink>,
    /// Why there is no `link`, in words.
    pub no_link_why: &'static str,
    /// The session that holds its link (where allowed, and this process runs it).
    pub writes: Option<Writes>,
}

/// Why a write was not made or not confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SetError {
    #[error("no battery \"{asked}\" (configured: {known})")]
    UnknownBattery { asked: String, known: String },
    #[error("control is off for {battery}: jkmon switches a BMS only where JK_BMS_CONTROL allows it (on, or the battery's position or name)")]
    ControlOff { battery: String },
    #[error("{battery} cannot be switched by jkmon: {why}")]
    NoWriteLink { battery: String, why: &'static str },
    #[error("this jkmon does not run {battery}'s BMS session: switch it where `jkmon run` or `jkmon poll` runs")]
    NotHere { battery: String },
    #[error("{battery}: a newer command for {switch} ({}) took this one's place", protocol::on_off(*on))]
    Superseded {
        battery: String,
        switch: Switch,
        /// What the newer command asks.
        on: bool,
    },
    #[error("{battery}: {source}")]
    Write {
        battery: String,
        #[source]
        source: WriteError,
    },
}

/// Every battery's control, shared by the interfaces. Cheap to clone.
#[derive(Clone, Default)]
pub struct Controller {
    slots: Arc<Vec<Slot>>,
    records: Option<WriterSender>,
    /// Per battery (position) and switch: the commands waiting, the write in flight, the pace.
    lanes: Arc<Mutex<HashMap<(usize, Switch), Lane>>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("slots", &self.slots)
            .finish()
    }
}

impl Controller {
    /// `records`: where the outcomes go (the database writer).
    pub fn new(slots: Vec<Slot>, records: Option<WriterSender>) -> Controller {
        Controller {
            slots: Arc::new(slots),
            records,
            lanes: Arc::default(),
        }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Whether any battery may be switched from this process.
    pub fn enabled(&self) -> bool {
        self.slots.iter().any(Slot::takes_writes)
    }

    /// Battery `position`, where this process may switch it.
    pub fn slot(&self, position: usize) -> Option<&Slot> {
        self.slots
            .iter()
            .find(|s| s.position == position && s.takes_writes())
    }

    /// The battery `asked` names: its position (`1`) or its name, case aside.
    pub fn find(&self, asked: &str) -> Result<&Slot, SetError> {
        let asked = asked.trim();
        if self.slots.is_empty() {
            // a process that runs no BMS session and has none configured (`jkmon web`)
            return Err(SetError::NotHere {
                battery: format!("battery {asked}"),
            });
        }
        self.slots
            .iter()
            .find(|s| s.position.to_string() == asked || s.name.eq_ignore_ascii_case(asked))
            .ok_or_else(|| SetError::UnknownBattery {
                asked: asked.to_string(),
                known: self.known(),
            })
    }

    /// Battery `position` (1-based).
    fn at(&self, position: usize) -> Result<&Slot, SetError> {
        self.find(&position.to_string())
    }

    /// Battery `position`'s name, or its position where none is known.
    pub fn name_of(&self, position: usize) -> String {
        self.at(position)
            .map_or_else(|_| position.to_string(), |s| s.name.clone())
    }

    fn known(&self) -> String {
        let names: Vec<String> = self
            .slots
            .iter()
            .map(|s| format!("{} {}", s.position, s.name))
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// Sets `setting` on battery `position` for `source` and waits for the outcome: see
    /// [`Controller::ask`].
    pub async fn set(
        &self,
        position: usize,
        setting: Setting,
        source: Source,
    ) -> Result<(), SetError> {
        let answer = self.ask(position, setting, source)?;
        let battery = self.name_of(position);
        answer.await.unwrap_or(Err(SetError::Write {
            battery,
            source: WriteError::Stopped,
        }))
    }

    /// Takes `setting` on battery `position` for `source` as the newest wish for that switch,
    /// at once and in the order callers ask (the MQTT client asks from its event loop):
    /// refused at once where control is off or the link takes no writes; otherwise the write
    /// in flight finishes, and then the newest wish — if the BMS has not just confirmed it —
    /// goes through the battery's session, [`lane::WRITE_SPACING`] after the last, answered by
    /// the BMS's own next settings frame. A wish a newer one replaced is answered
    /// [`SetError::Superseded`]; the replaced ones are summed up in the log once a minute.
    /// Every write that reached a session is logged and recorded, whatever its outcome.
    pub fn ask(
        &self,
        position: usize,
        setting: Setting,
        source: Source,
    ) -> Result<oneshot::Receiver<Result<(), SetError>>, SetError> {
        let slot = self.at(position)?;
        let battery = slot.name.clone();
        if !slot.allowed {
            tracing::warn!("control: {setting} on {battery} asked by {source}, refused: JK_BMS_CONTROL leaves it off");
            return Err(SetError::ControlOff { battery });
        }
        if slot.link.is_none() {
            return Err(SetError::NoWriteLink {
                battery,
                why: slot.no_link_why,
            });
        }
        if slot.writes.is_none() {
            return Err(SetError::NotHere { battery });
        }
        tracing::debug!("control: {setting} on {battery} asked by {source}");
        let (reply, answer) = oneshot::channel();
        let switch = setting.switch;
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry((position, switch)).or_default();
        lane.ask(setting.on, source, reply, |on| SetError::Superseded {
            battery: battery.clone(),
            switch,
            on,
        });
        if !lane.busy {
            lane.busy = true;
            tokio::spawn(self.clone().work(position, switch));
        }
        Ok(answer)
    }

    /// Works through one switch's wishes until none is left.
    async fn work(self, position: usize, switch: Switch) {
        loop {
            let now = tokio::time::Instant::now();
            let (next, summary) = {
                let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
                let lane = lanes.entry((position, switch)).or_default();
                let next = lane.next(now.into_std());
                let summary = lane.summary(now.into_std(), next == Next::Idle);
                (next, summary)
            };
            if let Some(n) = summary {
                tracing::info!(
                    "control: {n} command(s) for {switch} on {} were replaced by newer ones before they were written",
                    self.name_of(position)
                );
            }
            let (ask, result) = match next {
                Next::Idle => {
                    tracing::debug!(
                        "control: {switch} on {}: no command waiting",
                        self.name_of(position)
                    );
                    return;
                }
                Next::WaitUntil(due) => {
                    tokio::time::sleep_until(due.into()).await;
                    continue;
                }
                Next::Already(ask) => (ask, Ok(())),
                Next::Write(ask) => {
                    let result = self.write(position, switch, ask).await;
                    (ask, result)
                }
            };
            let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(lane) = lanes.get_mut(&(position, switch)) {
                lane.answer(ask, &result);
            }
        }
    }

    /// One write through the battery's session, logged and recorded.
    async fn write(&self, position: usize, switch: Switch, ask: Ask) -> Result<(), SetError> {
        let slot = self.at(position)?;
        let battery = slot.name.clone();
        let Some(writes) = &slot.writes else {
            return Err(SetError::NotHere { battery });
        };
        let setting = Setting { switch, on: ask.on };
        let source = ask.source;
        tracing::info!("control: {setting} on {battery} asked by {source}");
        let result = session::set(writes, position - 1, setting).await;
        let (outcome, detail) = match &result {
            Ok(()) => {
                tracing::info!("control: {setting} on {battery} ({source}): confirmed by the BMS");
                ("confirmed", String::new())
            }
            Err(e) => {
                tracing::warn!("control: {setting} on {battery} ({source}): {e}");
                (e.outcome(), e.to_string())
            }
        };
        let record = WriteRecord {
            at: Utc::now(),
            position,
            battery: battery.clone(),
            device_key: slot.device_key.clone(),
            setting,
            source,
            outcome,
            detail,
        };
        if let Some(records) = &self.records {
            if !records.send(Message::SwitchWrite(record)) {
                tracing::warn!("control: the database writer is behind; the write to {battery} is in the log only");
            }
        }
        result.map_err(|source| SetError::Write { battery, source })
    }
}

impl Slot {
    /// Whether this process can switch it: allowed, a link that takes writes, its session here.
    pub fn takes_writes(&self) -> bool {
        self.allowed && self.link.is_some() && self.writes.is_some()
    }

    /// The switches this battery's board can set over its link (`variant` as last read).
    pub fn switches(&self, variant: Option<Variant>) -> Vec<Switch> {
        let Some(link) = self.link else {
            return Vec::new();
        };
        Switch::ALL
            .into_iter()
            .filter(|s| link.can_set(variant, *s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn slot(position: usize, name: &str, allowed: bool, writes: Option<Writes>) -> Slot {
        Slot {
            position,
            name: name.into(),
            device_key: format!("key{position}"),
            allowed,
            link: Some(WriteLink::Bluetooth),
            no_link_why: "",
            writes,
        }
    }

    #[tokio::test]
    async fn a_battery_control_leaves_off_is_refused_before_anything_is_sent() {
        let (tx, mut rx) = mpsc::channel(1);
        let c = Controller::new(
            vec![
                slot(1, "Garage", false, Some(tx)),
                slot(2, "Shed", true, None),
            ],
            None,
        );
        let set: Setting = "charging=off".parse().unwrap();
        let e = c.set(1, set, Source::Api).await.unwrap_err();
        assert!(matches!(e, SetError::ControlOff { .. }), "{e}");
        assert!(e.to_string().contains("JK_BMS_CONTROL"), "{e}");
        assert!(rx.try_recv().is_err(), "nothing may reach the session");
        let e = c.set(2, set, Source::Api).await.unwrap_err();
        assert!(matches!(e, SetError::NotHere { .. }), "{e}");
        let e = c.set(3, set, Source::Api).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "no battery \"3\" (configured: 1 Garage, 2 Shed)"
        );
        assert!(!c.enabled());
        assert_eq!(c.find("garage").unwrap().position, 1);
        // `jkmon web` on its own, with no BMS configured: it says where to switch
        let e = Controller::default().find("1").unwrap_err();
        assert!(e.to_string().contains("`jkmon run`"), "{e}");
    }

    #[tokio::test]
    async fn a_write_goes_to_the_session_and_its_outcome_comes_back() {
        let (tx, mut rx) = mpsc::channel::<session::WriteRequest>(1);
        let c = Controller::new(vec![slot(1, "Garage", true, Some(tx))], None);
        assert!(c.enabled());
        tokio::spawn(async move {
            let r = rx.recv().await.unwrap();
            assert_eq!(
                (r.battery, r.setting.to_string()),
                (0, "balancer=on".into())
            );
            let _ = r.reply.send(Err(WriteError::Refused {
                switch: Switch::Balancer,
                reported: false,
            }));
        });
        let e = c
            .set(1, "balancer=on".parse().unwrap(), Source::Mqtt)
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with("Garage: the BMS acknowledged"),
            "{e}"
        );
    }

    #[test]
    fn the_switches_follow_the_board_and_the_link() {
        let mut s = slot(1, "A", true, None);
        assert_eq!(s.switches(Some(Variant::Jk02_32s)).len(), 4);
        assert_eq!(s.switches(Some(Variant::Jk04)), vec![Switch::Balancer]);
        assert!(s.switches(None).is_empty());
        s.link = Some(WriteLink::Rs485);
        assert_eq!(s.switches(None).len(), 3);
        s.link = None;
        assert!(s.switches(Some(Variant::Jk02_32s)).is_empty());
    }
}
