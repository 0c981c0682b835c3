//! A Bluetooth device address (MAC), as users write it: `AA:BB:CC:DD:EE:FF`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress(pub [u8; 6]);

impl FromStr for MacAddress {
    type Err = String;
    /// Six hex pairs separated by `:` (or `-`), either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || {
            format!("\"{s}\" is not a Bluetooth address (expected six hex pairs like AA:BB:CC:DD:EE:FF)")
        };
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut bytes = [0u8; 6];
        for (b, p) in bytes.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(MacAddress(bytes))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl From<btleplug::api::BDAddr> for MacAddress {
    fn from(a: btleplug::api::BDAddr) -> Self {
        MacAddress(a.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_upper_case() {
        let a: MacAddress = "c8:47:80:12:ad:71".parse().unwrap();
        assert_eq!(a.to_string(), "C8:47:80:12:AD:71");
        assert_eq!("C8-47-80-12-AD-71".parse::<MacAddress>().unwrap(), a);
        for bad in [
            "",
            "C8:47:80:12:AD",
            "C8:47:80:12:AD:7",
            "C8:47:80:12:AD:ZZ",
            "C8:47:80:12:AD:71:00",
            "C847.8012.AD71",
        ] {
            let e = bad.parse::<MacAddress>().unwrap_err();
            assert!(e.contains("AA:BB:CC:DD:EE:FF"), "{e}");
        }
    }
}
