//! The BMS's switches — charging, discharging, balancer, heater — as the bytes that set them,
//! and how a settings frame shows whether they took. Pure, like the rest of [`super`].
//!
//! - BLE (§1.6): the 20-byte command with the switch's write register at byte 4, length 4 and the
//!   value little-endian (JK02: `0x1D` charging, `0x1E` discharging, `0x1F` balancer, and on
//!   JK02_32S `0x27` heating, the first of the individual control-bit registers; JK04: only the
//!   balancer, `0x6C`, with an f32 value).
//! - JK-PB RS485 network (§4.4): Modbus FC 0x10 of two registers to the settings block at
//!   `0x1000 + (settings-frame offset − 6)` (`0x1070` charging, `0x1074` discharging, `0x1078`
//!   balancer), answered by the 8-byte FC 0x10 echo. The reference gives no single register for
//!   the heater there (its bit lives in a 16-bit word of other controls), so it is not offered.
//!
//! The BMS's `C8` frame after a write is no proof: a write is confirmed only by the next settings
//! frame showing the new state ([`confirmation`]).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::checksum::{crc16_modbus, sum8};
use super::command::{COMMAND_HEADER, COMMAND_LEN};
use super::{DecodeError, Settings, Variant};

/// A switch of the BMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Switch {
    Charging,
    Discharging,
    Balancer,
    Heater,
}

impl Switch {
    pub const ALL: [Switch; 4] = [
        Switch::Charging,
        Switch::Discharging,
        Switch::Balancer,
        Switch::Heater,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Switch::Charging => "charging",
            Switch::Discharging => "discharging",
            Switch::Balancer => "balancer",
            Switch::Heater => "heater",
        }
    }
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Switch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "charging" | "charge" => Ok(Switch::Charging),
            "discharging" | "discharge" => Ok(Switch::Discharging),
            "balancer" | "balancing" | "balance" => Ok(Switch::Balancer),
            "heater" | "heating" => Ok(Switch::Heater),
            other => Err(format!(
                "\"{other}\" is not a switch (charging, discharging, balancer or heater)"
            )),
        }
    }
}

/// A wanted state: `charging=off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub switch: Switch,
    pub on: bool,
}

impl FromStr for Setting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| format!("\"{s}\": write switch=on or switch=off, e.g. charging=off"))?;
        let on = match value.trim().to_ascii_lowercase().as_str() {
            "on" | "1" | "true" => true,
            "off" | "0" | "false" => false,
            other => return Err(format!("\"{other}\": a switch is on or off")),
        };
        Ok(Setting {
            switch: name.parse()?,
            on,
        })
    }
}

/// A switch's state in words: `on` or `off`.
pub fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.switch, on_off(self.on))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControlError {
    #[error("the {switch} switch cannot be set on {board}: {why}")]
    NotOnThisBoard {
        switch: Switch,
        board: String,
        why: &'static str,
    },
}

fn not_on(switch: Switch, board: impl Into<String>, why: &'static str) -> ControlError {
    ControlError::NotOnThisBoard {
        switch,
        board: board.into(),
        why,
    }
}

/// The BLE write register of `switch` on a `variant` board.
pub fn ble_register(variant: Variant, switch: Switch) -> Result<u8, ControlError> {
    let board = || format!("a {} board", variant.as_str());
    match (variant, switch) {
        (Variant::Jk02_24s | Variant::Jk02_32s, Switch::Charging) => Ok(0x1D),
        (Variant::Jk02_24s | Variant::Jk02_32s, Switch::Discharging) => Ok(0x1E),
        (Variant::Jk02_24s | Variant::Jk02_32s, Switch::Balancer) => Ok(0x1F),
        (Variant::Jk02_32s, Switch::Heater) => Ok(0x27),
        (Variant::Jk02_24s, Switch::Heater) => Err(not_on(
            switch,
            board(),
            "boards with firmware before 11 have no heater control",
        )),
        (Variant::Jk04, Switch::Balancer) => Ok(0x6C),
        (Variant::Jk04, _) => Err(not_on(
            switch,
            board(),
            "a JK04 board (hardware 3.x, the B5A24S balancer) switches only its balancer",
        )),
        (Variant::Serial4e57, _) => Err(serial_port_refusal(switch)),
    }
}

/// Why `switch` is not written over the serial 4E 57 port.
pub fn serial_port_refusal(switch: Switch) -> ControlError {
    not_on(
        switch,
        "the serial 4E 57 port",
        "jkmon does not write over the GPS/UART port (most boards refuse it); use Bluetooth or the RS485 network",
    )
}

/// The 20-byte BLE command that sets `setting` on a `variant` board.
pub fn ble_write(variant: Variant, setting: Setting) -> Result<[u8; COMMAND_LEN], ControlError> {
    let register = ble_register(variant, setting.switch)?;
    let value: u32 = match (variant, setting.on) {
        (Variant::Jk04, on) => (if on { 1.0f32 } else { 0.0 }).to_bits(),
        (_, on) => u32::from(on),
    };
    let mut f = [0u8; COMMAND_LEN];
    f[..4].copy_from_slice(&COMMAND_HEADER);
    f[4] = register;
    f[5] = 4;
    f[6..10].copy_from_slice(&value.to_le_bytes());
    f[19] = sum8(&f[..19]);
    Ok(f)
}

/// The settings-block register of `switch` on the JK-PB RS485 network.
pub fn rs485_register(switch: Switch) -> Result<u16, ControlError> {
    // 0x1000 + (settings-frame offset − 6): offsets 118, 122, 126
    match switch {
        Switch::Charging => Ok(0x1070),
        Switch::Discharging => Ok(0x1074),
        Switch::Balancer => Ok(0x1078),
        Switch::Heater => Err(not_on(
            switch,
            "the RS485 network",
            "its heater bit shares a word with other controls and has no register of its own there; switch the heater over Bluetooth",
        )),
    }
}

/// The Modbus FC 0x10 frame that sets `setting` on the pack at `address` (13 bytes).
pub fn rs485_write(address: u8, setting: Setting) -> Result<Vec<u8>, ControlError> {
    let register = rs485_register(setting.switch)?;
    let mut f = vec![address, 0x10];
    f.extend_from_slice(&register.to_be_bytes());
    f.extend_from_slice(&[0x00, 0x02, 0x04]);
    f.extend_from_slice(&u32::from(setting.on).to_be_bytes());
    let crc = crc16_modbus(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    Ok(f)
}

/// The pack's 8-byte answer to [`rs485_write`]: address, FC 0x10, register, count, CRC.
pub fn rs485_write_answer(address: u8, switch: Switch) -> Result<[u8; 8], ControlError> {
    let register = rs485_register(switch)?;
    let mut f = [0u8; 8];
    f[0] = address;
    f[1] = 0x10;
    f[2..4].copy_from_slice(&register.to_be_bytes());
    f[4..6].copy_from_slice(&[0x00, 0x02]);
    let crc = crc16_modbus(&f[..6]);
    f[6..8].copy_from_slice(&crc.to_le_bytes());
    Ok(f)
}

/// Length of [`rs485_write`]'s frame and of its answer.
pub const RS485_WRITE_LEN: usize = 13;
pub const RS485_WRITE_ANSWER_LEN: usize = 8;

/// A switch write on the RS485 network, or a pack's answer to one (`on` is `None`), as heard
/// on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rs485SwitchWrite {
    pub address: u8,
    pub switch: Switch,
    pub on: Option<bool>,
}

fn switch_at(register: u16) -> Option<Switch> {
    Switch::ALL
        .into_iter()
        .find(|s| rs485_register(*s).ok() == Some(register))
}

/// Whether `b` (the first bytes on the wire, up to 4) could start a switch write or its answer:
/// `[address 00-0f] 10 10 [70|74|78]`.
pub fn could_be_rs485_write(b: &[u8]) -> bool {
    let shape = [
        b.first().is_none_or(|a| *a <= super::rs485::MAX_ADDRESS),
        b.get(1).is_none_or(|f| *f == 0x10),
        b.get(2).is_none_or(|r| *r == 0x10),
        b.get(3)
            .is_none_or(|r| switch_at(u16::from_be_bytes([0x10, *r])).is_some()),
    ];
    shape.iter().all(|ok| *ok)
}

fn write_header(b: &[u8], len: usize, what: &'static str) -> Result<(u8, Switch), DecodeError> {
    if b.len() < len {
        return Err(DecodeError::Truncated {
            what,
            got: b.len(),
            expected: len,
        });
    }
    let switch = (b[0] <= super::rs485::MAX_ADDRESS && b[1] == 0x10 && b[4..6] == [0x00, 0x02])
        .then(|| switch_at(u16::from_be_bytes([b[2], b[3]])))
        .flatten()
        .ok_or_else(|| DecodeError::BadHeader {
            expected: "[address 00-0f] 10 [switch register 1070/1074/1078] 00 02",
            got: super::hex(&b[..6]),
        })?;
    Ok((b[0], switch))
}

/// Parses the 13-byte switch write of [`rs485_write`].
pub fn parse_rs485_write(b: &[u8]) -> Result<Rs485SwitchWrite, DecodeError> {
    let (address, switch) = write_header(b, RS485_WRITE_LEN, "RS485 switch write")?;
    if b[6] != 0x04 {
        return Err(DecodeError::BadHeader {
            expected: "byte count 04",
            got: super::hex(&b[6..7]),
        });
    }
    super::rs485::check_crc(b, 11)?;
    let value = u32::from_be_bytes([b[7], b[8], b[9], b[10]]);
    Ok(Rs485SwitchWrite {
        address,
        switch,
        on: Some(value != 0),
    })
}

/// Parses a pack's 8-byte answer to a switch write ([`rs485_write_answer`]).
pub fn parse_rs485_write_answer(b: &[u8]) -> Result<Rs485SwitchWrite, DecodeError> {
    let (address, switch) = write_header(b, RS485_WRITE_ANSWER_LEN, "RS485 switch answer")?;
    super::rs485::check_crc(b, 6)?;
    Ok(Rs485SwitchWrite {
        address,
        switch,
        on: None,
    })
}

/// The state of `switch` in a settings frame, where the frame has it.
pub fn state(settings: &Settings, switch: Switch) -> Option<bool> {
    match switch {
        Switch::Charging => settings.charge_switch,
        Switch::Discharging => settings.discharge_switch,
        Switch::Balancer => settings.balancer_switch,
        Switch::Heater => settings.heating_switch,
    }
}

/// What a settings frame after a write says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// The BMS reports the state asked for.
    Confirmed,
    /// The BMS reports the other state: it did not take the write.
    Refused,
    /// The frame does not carry this switch.
    Unknown,
}

/// Whether `settings` (a frame that arrived after the write) shows `setting`.
pub fn confirmation(settings: &Settings, setting: Setting) -> Confirmation {
    match state(settings, setting.switch) {
        Some(s) if s == setting.on => Confirmation::Confirmed,
        Some(_) => Confirmation::Refused,
        None => Confirmation::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rs485_writes_and_their_answers_read_back_and_nothing_else_does() {
        for switch in [Switch::Charging, Switch::Discharging, Switch::Balancer] {
            for on in [false, true] {
                let w = rs485_write(2, Setting { switch, on }).unwrap();
                let got = parse_rs485_write(&w).unwrap();
                assert_eq!(
                    got,
                    Rs485SwitchWrite {
                        address: 2,
                        switch,
                        on: Some(on)
                    }
                );
                assert!(could_be_rs485_write(&w[..4]));
                let a = rs485_write_answer(2, switch).unwrap();
                assert_eq!(parse_rs485_write_answer(&a).unwrap().on, None);
            }
        }
        let mut w = rs485_write(2, "balancer=on".parse().unwrap()).unwrap();
        w[12] ^= 1;
        assert!(matches!(
            parse_rs485_write(&w),
            Err(DecodeError::BadCrc { .. })
        ));
        // a read trigger is not a write
        let read =
            crate::protocol::rs485::request(1, crate::protocol::rs485::Rs485Register::CellInfo);
        assert!(!could_be_rs485_write(&read[..4]));
        assert!(parse_rs485_write_answer(&read[..8]).is_err());
    }

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn ble_switch_writes_are_the_captured_bytes() {
        // the protocol reference's example and the captured writes (jk-frames.json 182-185)
        let set = |s: &str| s.parse::<Setting>().unwrap();
        for (setting, bytes) in [
            ("charging=on", "aa5590eb1d04010000000000000000000000009c"),
            ("charging=off", "aa5590eb1d04000000000000000000000000009b"),
            ("discharging=on", "aa5590eb1e04010000000000000000000000009d"),
            (
                "discharging=off",
                "aa5590eb1e04000000000000000000000000009c",
            ),
        ] {
            for variant in [Variant::Jk02_24s, Variant::Jk02_32s] {
                assert_eq!(
                    ble_write(variant, set(setting)).unwrap().to_vec(),
                    unhex(bytes)
                );
            }
        }
        // the heater is the first control-bit register (captured: 27 04 00000000 turns it off)
        let heater = ble_write(Variant::Jk02_32s, set("heater=off")).unwrap();
        assert_eq!(&heater[4..10], &unhex("27 04 00000000")[..]);
        let parsed = super::super::command::parse(&heater).unwrap();
        assert_eq!((parsed.command, parsed.length, parsed.value), (0x27, 4, 0));
        // JK04 carries floats
        let jk04 = ble_write(Variant::Jk04, set("balancer=on")).unwrap();
        assert_eq!(&jk04[4..10], &unhex("6c 04 0000803f")[..]);
    }

    #[test]
    fn a_switch_a_board_does_not_have_is_refused_by_name() {
        let heater = Setting {
            switch: Switch::Heater,
            on: true,
        };
        let e = ble_write(Variant::Jk02_24s, heater)
            .unwrap_err()
            .to_string();
        assert!(e.contains("heater") && e.contains("before 11"), "{e}");
        let charging = Setting {
            switch: Switch::Charging,
            on: false,
        };
        let e = ble_write(Variant::Jk04, charging).unwrap_err().to_string();
        assert!(e.contains("only its balancer"), "{e}");
        assert!(ble_write(Variant::Serial4e57, charging).is_err());
        let e = rs485_write(1, heater).unwrap_err().to_string();
        assert!(e.contains("Bluetooth"), "{e}");
    }

    #[test]
    fn rs485_writes_are_the_references_frame_and_answer() {
        let balancer_on = Setting {
            switch: Switch::Balancer,
            on: true,
        };
        // §4.4: address 2, 0x1078 balancer switch = 1
        assert_eq!(
            rs485_write(2, balancer_on).unwrap(),
            unhex("02 10 10 78 00 02 04 00 00 00 01 F6 69")
        );
        let answer = rs485_write_answer(2, Switch::Balancer).unwrap();
        assert_eq!(&answer[..6], &unhex("02 10 10 78 00 02")[..]);
        assert_eq!(
            crc16_modbus(&answer[..6]).to_le_bytes(),
            [answer[6], answer[7]]
        );
    }

    #[test]
    fn settings_say_whether_a_write_took() {
        let s = Settings {
            charge_switch: Some(false),
            discharge_switch: Some(true),
            balancer_switch: Some(true),
            heating_switch: None,
            ..Settings::default()
        };
        let set = |t: &str| t.parse::<Setting>().unwrap();
        assert_eq!(
            confirmation(&s, set("charging=off")),
            Confirmation::Confirmed
        );
        assert_eq!(
            confirmation(&s, set("discharging=off")),
            Confirmation::Refused
        );
        assert_eq!(confirmation(&s, set("heater=on")), Confirmation::Unknown);
    }

    #[test]
    fn settings_are_read_from_what_people_type() {
        assert_eq!(
            "Charging=OFF".parse::<Setting>().unwrap(),
            Setting {
                switch: Switch::Charging,
                on: false
            }
        );
        assert!("charging"
            .parse::<Setting>()
            .unwrap_err()
            .contains("charging=off"));
        assert!("fan=on"
            .parse::<Setting>()
            .unwrap_err()
            .contains("not a switch"));
        assert!("heater=maybe"
            .parse::<Setting>()
            .unwrap_err()
            .contains("on or off"));
    }
}
