//! Settings frames (type 0x01), the answer to command 0x96 (§2.6 JK02, §2.7 JK04).
//! Read-only: jkmon shows the limits, it never writes them.

use super::variant::Variant;
use super::{
    expect_frame, read_f32, read_i32, read_u16, read_u32, read_u8, seal_frame, write_u32,
    DecodeError, FrameType, FRAME_LEN,
};

/// JK02 settings offsets (24S and 32S share them up to 138; §2.6). u32 LE unless noted.
pub mod jk02 {
    /// mV.
    pub const SMART_SLEEP_VOLTAGE: usize = 6;
    pub const CELL_UVP: usize = 10;
    pub const CELL_UVP_RECOVERY: usize = 14;
    pub const CELL_OVP: usize = 18;
    pub const CELL_OVP_RECOVERY: usize = 22;
    pub const BALANCE_TRIGGER: usize = 26;
    pub const SOC_100_VOLTAGE: usize = 30;
    pub const SOC_0_VOLTAGE: usize = 34;
    pub const REQUEST_CHARGE_VOLTAGE: usize = 38;
    pub const REQUEST_FLOAT_VOLTAGE: usize = 42;
    pub const POWER_OFF_VOLTAGE: usize = 46;
    /// mA.
    pub const MAX_CHARGE_CURRENT: usize = 50;
    /// s.
    pub const CHARGE_OCP_DELAY: usize = 54;
    pub const CHARGE_OCP_RECOVERY: usize = 58;
    /// mA.
    pub const MAX_DISCHARGE_CURRENT: usize = 62;
    /// s.
    pub const DISCHARGE_OCP_DELAY: usize = 66;
    pub const DISCHARGE_OCP_RECOVERY: usize = 70;
    pub const SCP_RECOVERY: usize = 74;
    /// mA.
    pub const MAX_BALANCE_CURRENT: usize = 78;
    /// i32 0.1 °C.
    pub const CHARGE_OTP: usize = 82;
    pub const CHARGE_OTP_RECOVERY: usize = 86;
    pub const DISCHARGE_OTP: usize = 90;
    pub const DISCHARGE_OTP_RECOVERY: usize = 94;
    pub const CHARGE_UTP: usize = 98;
    pub const CHARGE_UTP_RECOVERY: usize = 102;
    pub const MOS_OTP: usize = 106;
    pub const MOS_OTP_RECOVERY: usize = 110;
    /// count (first byte).
    pub const CELL_COUNT: usize = 114;
    /// bools.
    pub const CHARGE_SWITCH: usize = 118;
    pub const DISCHARGE_SWITCH: usize = 122;
    pub const BALANCER_SWITCH: usize = 126;
    /// mAh, the user-set capacity.
    pub const NOMINAL_CAPACITY: usize = 130;
    /// µs.
    pub const SCP_DELAY: usize = 134;
    /// mV.
    pub const BALANCE_START: usize = 138;
    /// JK02_32S only: u8 RS485 address, u8 s precharge time, u16 control bits, i8 °C heating
    /// start / stop, u8 h smart-sleep delay, u8 "data field enable control 0".
    pub const DEVICE_ADDRESS: usize = 270;
    pub const PRECHARGE_TIME: usize = 274;
    pub const CONTROLS: usize = 282;
    pub const HEATING_START: usize = 284;
    pub const HEATING_STOP: usize = 285;
    pub const SMART_SLEEP_HOURS: usize = 286;
    pub const DATA_FIELD_ENABLE_0: usize = 287;
    /// Bits of [`CONTROLS`].
    pub const CONTROL_HEATING: u16 = 1 << 0;
    pub const CONTROL_PORT_RS485: u16 = 1 << 3;
}

/// JK04 settings offsets (§2.7): floats in V and A.
pub mod jk04 {
    pub const CELL_COUNT: usize = 34;
    pub const POWER_OFF_VOLTAGE: usize = 38;
    pub const VOLTAGE_CALIBRATION: usize = 74;
    pub const BALANCE_START: usize = 98;
    pub const BALANCE_TRIGGER: usize = 106;
    pub const MAX_BALANCE_CURRENT: usize = 110;
    pub const BALANCER_SWITCH: usize = 114;
}

/// Protection limits, in mV / mA / 0.1 °C / s. `None` where the layout has no such field.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    pub variant: Option<Variant>,
    pub cell_count: u8,
    pub smart_sleep_mv: Option<u32>,
    pub cell_uvp_mv: Option<u32>,
    pub cell_uvp_recovery_mv: Option<u32>,
    pub cell_ovp_mv: Option<u32>,
    pub cell_ovp_recovery_mv: Option<u32>,
    pub balance_trigger_mv: Option<u32>,
    pub soc_100_mv: Option<u32>,
    pub soc_0_mv: Option<u32>,
    pub request_charge_mv: Option<u32>,
    pub request_float_mv: Option<u32>,
    pub power_off_mv: Option<u32>,
    pub max_charge_current_ma: Option<u32>,
    pub charge_ocp_delay_s: Option<u32>,
    pub charge_ocp_recovery_s: Option<u32>,
    pub max_discharge_current_ma: Option<u32>,
    pub discharge_ocp_delay_s: Option<u32>,
    pub discharge_ocp_recovery_s: Option<u32>,
    pub scp_recovery_s: Option<u32>,
    pub max_balance_current_ma: Option<u32>,
    pub charge_otp_dc: Option<i32>,
    pub charge_otp_recovery_dc: Option<i32>,
    pub discharge_otp_dc: Option<i32>,
    pub discharge_otp_recovery_dc: Option<i32>,
    pub charge_utp_dc: Option<i32>,
    pub charge_utp_recovery_dc: Option<i32>,
    pub mos_otp_dc: Option<i32>,
    pub mos_otp_recovery_dc: Option<i32>,
    pub charge_switch: Option<bool>,
    pub discharge_switch: Option<bool>,
    pub balancer_switch: Option<bool>,
    pub nominal_capacity_mah: Option<u32>,
    pub scp_delay_us: Option<u32>,
    pub balance_start_mv: Option<u32>,
    pub device_address: Option<u8>,
    pub precharge_time_s: Option<u8>,
    pub heating_switch: Option<bool>,
    /// `true` = the port is RS485, `false` = CAN.
    pub port_rs485: Option<bool>,
    pub heating_start_c: Option<i8>,
    pub heating_stop_c: Option<i8>,
    pub smart_sleep_h: Option<u8>,
    pub data_field_enable_0: Option<u8>,
    /// Serial `4E 57` only: the low-capacity alarm level.
    pub low_soc_alarm_pct: Option<u8>,
    /// JK04 ADC calibration factor.
    pub voltage_calibration: Option<f32>,
}

/// Decodes a settings frame with the given layout (the stream decoder chooses it).
pub fn decode(frame: &[u8], variant: Variant) -> Result<Settings, DecodeError> {
    expect_frame(frame, FrameType::Settings, "a settings frame (type 0x01)")?;
    Ok(match variant {
        Variant::Jk04 => decode_jk04(frame),
        Variant::Jk02_24s | Variant::Jk02_32s | Variant::Serial4e57 => decode_jk02(frame, variant),
    })
}

fn decode_jk02(f: &[u8], variant: Variant) -> Settings {
    use jk02::*;
    let u = |at| Some(read_u32(f, at));
    let i = |at| Some(read_i32(f, at));
    let b = |at| Some(read_u32(f, at) != 0);
    let is_32s = variant == Variant::Jk02_32s;
    let only_32s = |v: u8| is_32s.then_some(v);
    let controls = read_u16(f, CONTROLS);
    Settings {
        variant: Some(variant),
        cell_count: read_u8(f, CELL_COUNT),
        smart_sleep_mv: u(SMART_SLEEP_VOLTAGE),
        cell_uvp_mv: u(CELL_UVP),
        cell_uvp_recovery_mv: u(CELL_UVP_RECOVERY),
        cell_ovp_mv: u(CELL_OVP),
        cell_ovp_recovery_mv: u(CELL_OVP_RECOVERY),
        balance_trigger_mv: u(BALANCE_TRIGGER),
        soc_100_mv: u(SOC_100_VOLTAGE),
        soc_0_mv: u(SOC_0_VOLTAGE),
        request_charge_mv: u(REQUEST_CHARGE_VOLTAGE),
        request_float_mv: u(REQUEST_FLOAT_VOLTAGE),
        power_off_mv: u(POWER_OFF_VOLTAGE),
        max_charge_current_ma: u(MAX_CHARGE_CURRENT),
        charge_ocp_delay_s: u(CHARGE_OCP_DELAY),
        charge_ocp_recovery_s: u(CHARGE_OCP_RECOVERY),
        max_discharge_current_ma: u(MAX_DISCHARGE_CURRENT),
        discharge_ocp_delay_s: u(DISCHARGE_OCP_DELAY),
        discharge_ocp_recovery_s: u(DISCHARGE_OCP_RECOVERY),
        scp_recovery_s: u(SCP_RECOVERY),
        max_balance_current_ma: u(MAX_BALANCE_CURRENT),
        charge_otp_dc: i(CHARGE_OTP),
        charge_otp_recovery_dc: i(CHARGE_OTP_RECOVERY),
        discharge_otp_dc: i(DISCHARGE_OTP),
        discharge_otp_recovery_dc: i(DISCHARGE_OTP_RECOVERY),
        charge_utp_dc: i(CHARGE_UTP),
        charge_utp_recovery_dc: i(CHARGE_UTP_RECOVERY),
        mos_otp_dc: i(MOS_OTP),
        mos_otp_recovery_dc: i(MOS_OTP_RECOVERY),
        charge_switch: b(CHARGE_SWITCH),
        discharge_switch: b(DISCHARGE_SWITCH),
        balancer_switch: b(BALANCER_SWITCH),
        nominal_capacity_mah: u(NOMINAL_CAPACITY),
        scp_delay_us: u(SCP_DELAY),
        balance_start_mv: u(BALANCE_START),
        device_address: only_32s(read_u8(f, DEVICE_ADDRESS)),
        precharge_time_s: only_32s(read_u8(f, PRECHARGE_TIME)),
        heating_switch: is_32s.then_some(controls & CONTROL_HEATING != 0),
        port_rs485: is_32s.then_some(controls & CONTROL_PORT_RS485 != 0),
        heating_start_c: is_32s.then_some(read_u8(f, HEATING_START) as i8),
        heating_stop_c: is_32s.then_some(read_u8(f, HEATING_STOP) as i8),
        smart_sleep_h: only_32s(read_u8(f, SMART_SLEEP_HOURS)),
        data_field_enable_0: only_32s(read_u8(f, DATA_FIELD_ENABLE_0)),
        low_soc_alarm_pct: None,
        voltage_calibration: None,
    }
}

/// f32 in V or A → integer milli-units; nonsense (NaN, negative, huge) becomes `None`.
fn milli(v: f32) -> Option<u32> {
    let x = f64::from(v) * 1000.0;
    (x.is_finite() && (0.0..4.0e9).contains(&x)).then(|| x.round() as u32)
}

fn decode_jk04(f: &[u8]) -> Settings {
    use jk04::*;
    let cal = read_f32(f, VOLTAGE_CALIBRATION);
    Settings {
        variant: Some(Variant::Jk04),
        cell_count: read_u8(f, CELL_COUNT),
        power_off_mv: milli(read_f32(f, POWER_OFF_VOLTAGE)),
        voltage_calibration: cal.is_finite().then_some(cal),
        balance_start_mv: milli(read_f32(f, BALANCE_START)),
        balance_trigger_mv: milli(read_f32(f, BALANCE_TRIGGER)),
        max_balance_current_ma: milli(read_f32(f, MAX_BALANCE_CURRENT)),
        balancer_switch: Some(read_u8(f, BALANCER_SWITCH) != 0),
        ..Settings::default()
    }
}

/// Builds a JK02 settings frame with the fields the simulated BMS reports.
pub fn encode_jk02(s: &Settings, counter: u8) -> [u8; FRAME_LEN] {
    use jk02::*;
    let mut f = [0u8; FRAME_LEN];
    let mut put = |at, v: Option<u32>| write_u32(&mut f, at, v.unwrap_or(0));
    put(CELL_UVP, s.cell_uvp_mv);
    put(CELL_UVP_RECOVERY, s.cell_uvp_recovery_mv);
    put(CELL_OVP, s.cell_ovp_mv);
    put(CELL_OVP_RECOVERY, s.cell_ovp_recovery_mv);
    put(BALANCE_TRIGGER, s.balance_trigger_mv);
    put(POWER_OFF_VOLTAGE, s.power_off_mv);
    put(MAX_CHARGE_CURRENT, s.max_charge_current_ma);
    put(MAX_DISCHARGE_CURRENT, s.max_discharge_current_ma);
    put(MAX_BALANCE_CURRENT, s.max_balance_current_ma);
    put(CELL_COUNT, Some(u32::from(s.cell_count)));
    put(CHARGE_SWITCH, s.charge_switch.map(u32::from));
    put(DISCHARGE_SWITCH, s.discharge_switch.map(u32::from));
    put(BALANCER_SWITCH, s.balancer_switch.map(u32::from));
    put(NOMINAL_CAPACITY, s.nominal_capacity_mah);
    put(BALANCE_START, s.balance_start_mv);
    if s.variant == Some(Variant::Jk02_32s) {
        f[DEVICE_ADDRESS] = s.device_address.unwrap_or(0);
        f[PRECHARGE_TIME] = s.precharge_time_s.unwrap_or(0);
        f[SMART_SLEEP_HOURS] = s.smart_sleep_h.unwrap_or(24);
        let mut controls = 0u16;
        if s.heating_switch == Some(true) {
            controls |= CONTROL_HEATING;
        }
        if s.port_rs485 == Some(true) {
            controls |= CONTROL_PORT_RS485;
        }
        f[CONTROLS..CONTROLS + 2].copy_from_slice(&controls.to_le_bytes());
    }
    seal_frame(&mut f, FrameType::Settings, counter);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jk02_settings_round_trip_through_the_encoder() {
        let s = Settings {
            variant: Some(Variant::Jk02_32s),
            cell_count: 16,
            cell_uvp_mv: Some(2_600),
            cell_ovp_mv: Some(3_650),
            balance_trigger_mv: Some(5),
            max_charge_current_ma: Some(80_000),
            max_discharge_current_ma: Some(100_000),
            charge_switch: Some(true),
            discharge_switch: Some(false),
            balancer_switch: Some(true),
            nominal_capacity_mah: Some(314_000),
            balance_start_mv: Some(3_450),
            device_address: Some(1),
            precharge_time_s: Some(5),
            smart_sleep_h: Some(24),
            ..Settings::default()
        };
        let frame = encode_jk02(&s, 3);
        assert_eq!(&frame[18..22], &3_650u32.to_le_bytes(), "cell OVP at 18");
        let back = decode(&frame, Variant::Jk02_32s).unwrap();
        assert_eq!(back.cell_ovp_mv, Some(3_650));
        assert_eq!(back.discharge_switch, Some(false));
        assert_eq!(back.device_address, Some(1));
        assert_eq!(back.nominal_capacity_mah, Some(314_000));
        assert_eq!(
            super::super::variant::detect_from_settings(&frame),
            Variant::Jk02_32s
        );
    }

    #[test]
    fn jk04_settings_read_floats() {
        let mut f = [0u8; FRAME_LEN];
        f[6..10].copy_from_slice(&1.0f32.to_le_bytes());
        f[jk04::CELL_COUNT] = 16;
        f[38..42].copy_from_slice(&3.2f32.to_le_bytes());
        f[106..110].copy_from_slice(&0.008f32.to_le_bytes());
        f[110..114].copy_from_slice(&f32::NAN.to_le_bytes());
        seal_frame(&mut f, FrameType::Settings, 0);
        let s = decode(&f, Variant::Jk04).unwrap();
        assert_eq!(
            (s.cell_count, s.power_off_mv, s.balance_trigger_mv),
            (16, Some(3_200), Some(8))
        );
        assert_eq!(s.max_balance_current_ma, None, "NaN is no value");
    }
}
