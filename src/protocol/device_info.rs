//! Device-info frames (type 0x03), the answer to command 0x97. The same layout on every variant
//! (§2.5). The frame carries the app passcodes in clear text: they are decoded into [`Secret`],
//! which never prints, logs or serialises its content.

use std::fmt;

use super::{expect_frame, read_str, read_u32, seal_frame, write_str, write_u32};
use super::{DecodeError, FrameType, FRAME_LEN};

/// Offsets of the device-info fields (§2.5). Strings are NUL-padded ASCII of the given length.
pub mod layout {
    pub const MODEL: (usize, usize) = (6, 16);
    pub const HARDWARE_VERSION: (usize, usize) = (22, 8);
    pub const SOFTWARE_VERSION: (usize, usize) = (30, 8);
    /// u32 s.
    pub const UPTIME: usize = 38;
    /// u32.
    pub const POWER_ON_COUNT: usize = 42;
    pub const DEVICE_NAME: (usize, usize) = (46, 16);
    pub const DEVICE_PASSCODE: (usize, usize) = (62, 16);
    /// `YYMMDD`.
    pub const MANUFACTURING_DATE: (usize, usize) = (78, 8);
    pub const SERIAL_NUMBER: (usize, usize) = (86, 11);
    pub const PASSCODE: (usize, usize) = (97, 5);
    pub const USER_DATA: (usize, usize) = (102, 16);
    pub const SETUP_PASSCODE: (usize, usize) = (118, 16);
    pub const USER_DATA_2: (usize, usize) = (134, 16);
}

/// A value that must never reach a log, a terminal, a database or a JSON document.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The clear text, for the rare code that must compare it. Never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The passcodes a device-info frame carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Passcodes {
    pub device: Secret,
    pub passcode: Secret,
    pub setup: Secret,
}

/// One device-info frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    pub model: String,
    pub hardware_version: String,
    pub software_version: String,
    pub uptime_s: Option<u32>,
    pub power_on_count: Option<u32>,
    /// The user-editable name; the BLE name on most modules.
    pub device_name: String,
    pub manufacturing_date: String,
    pub serial_number: String,
    pub user_data: String,
    pub passcodes: Passcodes,
}

fn field(f: &[u8], (at, len): (usize, usize)) -> String {
    read_str(f, at, len)
}

/// Decodes a device-info frame (at least 300 bytes).
pub fn decode(frame: &[u8]) -> Result<DeviceInfo, DecodeError> {
    expect_frame(
        frame,
        FrameType::DeviceInfo,
        "a device-info frame (type 0x03)",
    )?;
    use layout::*;
    Ok(DeviceInfo {
        model: field(frame, MODEL),
        hardware_version: field(frame, HARDWARE_VERSION),
        software_version: field(frame, SOFTWARE_VERSION),
        uptime_s: Some(read_u32(frame, UPTIME)),
        power_on_count: Some(read_u32(frame, POWER_ON_COUNT)),
        device_name: field(frame, DEVICE_NAME),
        manufacturing_date: field(frame, MANUFACTURING_DATE),
        serial_number: field(frame, SERIAL_NUMBER),
        user_data: field(frame, USER_DATA),
        passcodes: Passcodes {
            device: Secret::new(field(frame, DEVICE_PASSCODE)),
            passcode: Secret::new(field(frame, PASSCODE)),
            setup: Secret::new(field(frame, SETUP_PASSCODE)),
        },
    })
}

/// Builds a device-info frame (the simulated BMS answers 0x97 with it).
pub fn encode(info: &DeviceInfo, counter: u8) -> [u8; FRAME_LEN] {
    use layout::*;
    let mut f = [0u8; FRAME_LEN];
    let mut put = |(at, len): (usize, usize), s: &str| write_str(&mut f, at, len, s);
    put(MODEL, &info.model);
    put(HARDWARE_VERSION, &info.hardware_version);
    put(SOFTWARE_VERSION, &info.software_version);
    put(DEVICE_NAME, &info.device_name);
    put(DEVICE_PASSCODE, info.passcodes.device.expose());
    put(MANUFACTURING_DATE, &info.manufacturing_date);
    put(SERIAL_NUMBER, &info.serial_number);
    put(PASSCODE, info.passcodes.passcode.expose());
    put(USER_DATA, &info.user_data);
    put(SETUP_PASSCODE, info.passcodes.setup.expose());
    write_u32(&mut f, UPTIME, info.uptime_s.unwrap_or(0));
    write_u32(&mut f, POWER_ON_COUNT, info.power_on_count.unwrap_or(0));
    seal_frame(&mut f, FrameType::DeviceInfo, counter);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_passcodes_never_print() {
        let info = DeviceInfo {
            model: "JK_PB2A16S15P".into(),
            hardware_version: "14.XA".into(),
            software_version: "14.20".into(),
            uptime_s: Some(107_400),
            power_on_count: Some(148),
            device_name: "Garage".into(),
            manufacturing_date: "231118".into(),
            serial_number: "3092572134".into(),
            user_data: "Input Userdata".into(),
            passcodes: Passcodes {
                device: Secret::new("4321"),
                passcode: Secret::new("0000"),
                setup: Secret::new("123457"),
            },
        };
        let frame = encode(&info, 0);
        assert_eq!(&frame[6..19], b"JK_PB2A16S15P");
        let back = decode(&frame).unwrap();
        assert_eq!(back, info);
        assert_eq!(back.passcodes.device.expose(), "4321");
        let shown = format!("{back:?} {}", back.passcodes.setup);
        assert!(
            !shown.contains("4321") && !shown.contains("123457"),
            "{shown}"
        );
    }

    #[test]
    fn non_utf8_names_are_replaced_not_rejected() {
        let info = DeviceInfo {
            device_name: "BMS-1".into(),
            ..DeviceInfo::default()
        };
        let mut frame = encode(&info, 0);
        frame[48] = 0xFF;
        seal_frame(&mut frame, FrameType::DeviceInfo, 0);
        assert!(decode(&frame).unwrap().device_name.contains('\u{FFFD}'));
    }
}
