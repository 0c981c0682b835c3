//! The inverter variables, by the Python monitor's names where it has them: which link reaches
//! the inverter (`INVERTER_TRANSPORT`), where the dongle is (`INVERTER_IP`, or `MODBUS_HOST`),
//! this machine's address on its network (`LOCAL_IP`), the model (`INVERTER_MODEL`), the ports
//! and unit; for a wired inverter the serial port and baud rate, or the Modbus TCP gateway.

use std::net::IpAddr;

use super::env::{invalid, Env};
use super::ConfigError;
use crate::inverter::registers::{self, MODELS};
use crate::transport::inverter::dongle::DongleConfig;
use crate::transport::inverter::modbus::ModbusConfig;
use crate::transport::inverter::{InverterConfig, LinkConfig};

/// `None` unless `INVERTER_TRANSPORT` is `dongle`, `rtu` or `tcp` (the default, `none`, leaves
/// `readings` to another program, as before).
pub fn inverter(env: &Env) -> Result<Option<InverterConfig>, ConfigError> {
    let link = match env.get("INVERTER_TRANSPORT").as_deref() {
        None | Some("none") => return Ok(None),
        Some("dongle") => LinkConfig::Dongle(dongle(env)?),
        Some("rtu") => LinkConfig::Modbus(rtu(env)?),
        Some("tcp") => LinkConfig::Modbus(tcp(env)?),
        Some(other) => {
            let problem = "expected none (another program writes readings), dongle (the SmartESS Wi-Fi dongle), rtu (Modbus RTU on a serial adapter) or tcp (Modbus TCP to an RS485 gateway)";
            return Err(invalid("INVERTER_TRANSPORT", other, problem));
        }
    };
    let key = env
        .get("INVERTER_MODEL")
        .unwrap_or_else(|| registers::SMG_II_11K.key.to_string());
    let model = registers::model(&key).ok_or_else(|| {
        let known: Vec<&str> = MODELS.iter().map(|m| m.key).collect();
        invalid(
            "INVERTER_MODEL",
            &key,
            format!("expected one of {}", known.join(", ")),
        )
    })?;
    Ok(Some(InverterConfig { link, model }))
}

/// `INVERTER_IP`, or else the Python monitor's `MODBUS_HOST`: the variable's name and the
/// address.
fn inverter_ip(env: &Env, what: &str) -> Result<(&'static str, IpAddr), ConfigError> {
    let (var, ip) = match (env.get("INVERTER_IP"), env.get("MODBUS_HOST")) {
        (Some(ip), _) => ("INVERTER_IP", ip),
        (None, Some(ip)) => ("MODBUS_HOST", ip),
        (None, None) => {
            let problem = format!(
                "this INVERTER_TRANSPORT needs {what}: set INVERTER_IP (or MODBUS_HOST, the Python monitor's name)"
            );
            return Err(invalid("INVERTER_IP", "", problem));
        }
    };
    let parsed = ip
        .parse()
        .map_err(|_| invalid(var, &ip, "expected an IP address like 192.168.1.50"))?;
    Ok((var, parsed))
}

fn unit(env: &Env) -> Result<u8, ConfigError> {
    Ok(env.number("INVERTER_UNIT", 0u8..=247, "1")?.unwrap_or(1))
}

fn dongle(env: &Env) -> Result<DongleConfig, ConfigError> {
    let (_, dongle_ip) = inverter_ip(env, "the dongle's address (the IP the SmartESS app shows)")?;
    let local_ip = match env.get("LOCAL_IP") {
        Some(v) => v
            .parse()
            .map_err(|_| invalid("LOCAL_IP", &v, "expected this machine's IP address on the dongle's network, like 192.168.1.10"))?,
        None => local_ip_toward(dongle_ip).ok_or_else(|| {
            invalid(
                "LOCAL_IP",
                "",
                format!("no route from this machine to {dongle_ip}: set LOCAL_IP to this machine's address on the dongle's network"),
            )
        })?,
    };
    let mut dongle = DongleConfig::new(dongle_ip, local_ip);
    if let Some(port) = env.number("INVERTER_UDP_PORT", 1u16..=65_535, "58899")? {
        dongle.dongle.set_port(port);
    }
    if let Some(port) = env.number("INVERTER_LISTEN_PORT", 0u16..=65_535, "8899")? {
        dongle.listen_port = port;
    }
    dongle.unit = unit(env)?;
    Ok(dongle)
}

fn rtu(env: &Env) -> Result<ModbusConfig, ConfigError> {
    let Some(port) = env.get("INVERTER_SERIAL_PORT") else {
        let problem = "INVERTER_TRANSPORT=rtu needs the serial adapter wired to the inverter's RS485 port: set INVERTER_SERIAL_PORT, e.g. /dev/serial/by-id/usb-FTDI_…";
        return Err(invalid("INVERTER_SERIAL_PORT", "", problem));
    };
    let baud = env
        .number("INVERTER_BAUD", 1_200u32..=921_600, "9600")?
        .unwrap_or(9_600);
    let mut config = ModbusConfig::rtu(port, baud);
    config.unit = unit(env)?;
    Ok(config)
}

fn tcp(env: &Env) -> Result<ModbusConfig, ConfigError> {
    let (_, ip) = inverter_ip(env, "the Modbus TCP gateway's address")?;
    let port = env
        .number("MODBUS_PORT", 1u16..=65_535, "502")?
        .unwrap_or(502);
    let mut config = ModbusConfig::tcp(std::net::SocketAddr::new(ip, port));
    config.unit = unit(env)?;
    Ok(config)
}

/// The address this machine would send from to reach `ip` (the routing table's choice; no
/// packet is sent). Unlike the default route's address, it is the right one on a machine with
/// several networks.
fn local_ip_toward(ip: IpAddr) -> Option<IpAddr> {
    let any: IpAddr = if ip.is_ipv4() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::from([0u16; 8])
    };
    let socket = std::net::UdpSocket::bind((any, 0)).ok()?;
    socket
        .connect((ip, crate::transport::inverter::dongle::DONGLE_UDP_PORT))
        .ok()?;
    Some(socket.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> Result<Option<InverterConfig>, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| map.get(k).cloned();
        inverter(&Env::new(&lookup))
    }

    #[test]
    fn the_python_monitors_variables_configure_the_dongle() {
        assert!(with(&[]).unwrap().is_none(), "none by default");
        let c = with(&[
            ("INVERTER_TRANSPORT", "dongle"),
            ("MODBUS_HOST", "192.168.1.50"),
            ("LOCAL_IP", "192.168.1.10"),
            ("INVERTER_MODEL", "ISOLAR_SMG_II_6K"),
        ])
        .unwrap()
        .unwrap();
        let LinkConfig::Dongle(d) = &c.link else {
            panic!("{c:?}")
        };
        assert_eq!(d.dongle.to_string(), "192.168.1.50:58899");
        assert_eq!(d.local_ip.to_string(), "192.168.1.10");
        assert_eq!((d.listen_port, d.unit), (8899, 1));
        assert_eq!(c.model.key, "ISOLAR_SMG_II_6K");
        // the 11K by default, as the Python poller; LOCAL_IP from the route to the dongle
        let c = with(&[
            ("INVERTER_TRANSPORT", "dongle"),
            ("INVERTER_IP", "127.0.0.1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.model.key, "ISOLAR_SMG_II_11K");
        let LinkConfig::Dongle(d) = &c.link else {
            panic!("{c:?}")
        };
        assert_eq!(d.local_ip.to_string(), "127.0.0.1");
    }

    #[test]
    fn a_wired_inverter_is_modbus_rtu_or_tcp() {
        use crate::transport::inverter::modbus::Target;
        let c = with(&[
            ("INVERTER_TRANSPORT", "rtu"),
            ("INVERTER_SERIAL_PORT", "/dev/ttyUSB1"),
            ("INVERTER_UNIT", "2"),
        ])
        .unwrap()
        .unwrap();
        let LinkConfig::Modbus(m) = &c.link else {
            panic!("{c:?}")
        };
        assert_eq!(
            m.target.to_string(),
            "Modbus RTU on /dev/ttyUSB1 at 9600 baud"
        );
        assert_eq!(m.unit, 2);
        let c = with(&[
            ("INVERTER_TRANSPORT", "tcp"),
            ("MODBUS_HOST", "192.168.1.60"),
            ("MODBUS_PORT", "8502"),
        ])
        .unwrap()
        .unwrap();
        let LinkConfig::Modbus(m) = &c.link else {
            panic!("{c:?}")
        };
        assert_eq!(m.target, Target::Tcp("192.168.1.60:8502".parse().unwrap()));
        let e = with(&[("INVERTER_TRANSPORT", "rtu")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("INVERTER_SERIAL_PORT"), "{e}");
        let e = with(&[
            ("INVERTER_TRANSPORT", "tcp"),
            ("INVERTER_IP", "10.0.0.5"),
            ("MODBUS_PORT", "0"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("MODBUS_PORT"), "{e}");
    }

    #[test]
    fn bad_values_are_named_with_the_fix() {
        let err = |pairs: &[(&str, &str)]| with(pairs).unwrap_err().to_string();
        let e = err(&[("INVERTER_TRANSPORT", "dongle")]);
        assert!(
            e.contains("INVERTER_IP") && e.contains("MODBUS_HOST"),
            "{e}"
        );
        let e = err(&[("INVERTER_TRANSPORT", "wifi")]);
        assert!(
            e.contains("INVERTER_TRANSPORT=\"wifi\"") && e.contains("dongle") && e.contains("rtu"),
            "{e}"
        );
        let e = err(&[
            ("INVERTER_TRANSPORT", "dongle"),
            ("INVERTER_IP", "dongle.lan"),
        ]);
        assert!(e.contains("INVERTER_IP=\"dongle.lan\""), "{e}");
        let e = err(&[
            ("INVERTER_TRANSPORT", "dongle"),
            ("INVERTER_IP", "127.0.0.1"),
            ("INVERTER_MODEL", "SMG_9K"),
        ]);
        assert!(
            e.contains("ISOLAR_SMG_II_4K, ISOLAR_SMG_II_6K, ISOLAR_SMG_II_11K"),
            "{e}"
        );
    }
}
