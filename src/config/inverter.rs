//! The inverter variables, by the Python monitor's names where it has them: which link reaches
//! the inverter (`INVERTER_TRANSPORT`), where the dongle is (`INVERTER_IP`, or `MODBUS_HOST`),
//! this machine's address on its network (`LOCAL_IP`), the model (`INVERTER_MODEL`), and the
//! ports and unit.

use std::net::IpAddr;

use super::env::{invalid, Env};
use super::ConfigError;
use crate::inverter::registers::{self, MODELS};
use crate::transport::dongle::{DongleConfig, InverterConfig};

/// `None` unless `INVERTER_TRANSPORT=dongle` (the default, `none`, leaves `readings` to another
/// program, as before).
pub fn inverter(env: &Env) -> Result<Option<InverterConfig>, ConfigError> {
    match env.get("INVERTER_TRANSPORT").as_deref() {
        None | Some("none") => return Ok(None),
        Some("dongle") => {}
        Some(other) => {
            let problem = "expected none (another program writes readings) or dongle (the SmartESS Wi-Fi dongle); Modbus RTU and TCP are not supported yet";
            return Err(invalid("INVERTER_TRANSPORT", other, problem));
        }
    }
    let (var, ip) = match (env.get("INVERTER_IP"), env.get("MODBUS_HOST")) {
        (Some(ip), _) => ("INVERTER_IP", ip),
        (None, Some(ip)) => ("MODBUS_HOST", ip),
        (None, None) => {
            let problem = "INVERTER_TRANSPORT=dongle needs the dongle's address: set INVERTER_IP (or MODBUS_HOST, the Python monitor's name) to the IP the SmartESS app shows";
            return Err(invalid("INVERTER_IP", "", problem));
        }
    };
    let dongle_ip: IpAddr = ip
        .parse()
        .map_err(|_| invalid(var, &ip, "expected an IP address like 192.168.1.50"))?;
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
    if let Some(unit) = env.number("INVERTER_UNIT", 0u8..=247, "1")? {
        dongle.unit = unit;
    }
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
    Ok(Some(InverterConfig { dongle, model }))
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
        .connect((ip, crate::transport::dongle::DONGLE_UDP_PORT))
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
        assert_eq!(c.dongle.dongle.to_string(), "192.168.1.50:58899");
        assert_eq!(c.dongle.local_ip.to_string(), "192.168.1.10");
        assert_eq!((c.dongle.listen_port, c.dongle.unit), (8899, 1));
        assert_eq!(c.model.key, "ISOLAR_SMG_II_6K");
        // the 11K by default, as the Python poller; LOCAL_IP from the route to the dongle
        let c = with(&[
            ("INVERTER_TRANSPORT", "dongle"),
            ("INVERTER_IP", "127.0.0.1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.model.key, "ISOLAR_SMG_II_11K");
        assert_eq!(c.dongle.local_ip.to_string(), "127.0.0.1");
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
            e.contains("INVERTER_TRANSPORT=\"wifi\"") && e.contains("dongle"),
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
