use std::fmt;
use std::str::FromStr;

use crate::VfioError;

/// A PCI address in the kernel's `domain:bus:device.function` form.
///
/// Parsing accepts exactly `dddd:bb:dd.f` in hexadecimal (the form sysfs uses),
/// so an address can always be joined to a sysfs path safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl FromStr for PciAddress {
    type Err = VfioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VfioError::InvalidAddress(s.to_string());
        let b = s.as_bytes();
        if b.len() != 12 || b[4] != b':' || b[7] != b':' || b[10] != b'.' {
            return Err(bad());
        }
        let hex = |r: std::ops::Range<usize>| -> Result<u32, VfioError> {
            let part = &s[r];
            if !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(part, 16).map_err(|_| bad())
        };
        let domain = hex(0..4)?;
        let bus = hex(5..7)?;
        let device = hex(8..10)?;
        let function = hex(11..12)?;
        // A PCI device number has 5 bits and a function number 3.
        if device > 0x1f || function > 7 {
            return Err(bad());
        }
        Ok(PciAddress {
            domain: domain as u16,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// As the sysfs string, `0000:18:02.5`.
impl serde::Serialize for PciAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PciAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sysfs_form() {
        let a: PciAddress = "0000:18:02.5".parse().unwrap();
        assert_eq!(a.domain, 0);
        assert_eq!(a.bus, 0x18);
        assert_eq!(a.device, 2);
        assert_eq!(a.function, 5);
        assert_eq!(a.to_string(), "0000:18:02.5");
        let b: PciAddress = "ABCD:ff:1f.7".parse().unwrap();
        assert_eq!(b.to_string(), "abcd:ff:1f.7");
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "../../etc",
            "0000:18:02",
            "18:02.5",
            "0000:18:02.5 ",
            " 0000:18:02.5",
            "0000:18:02.8",
            "0000:18:20.0",
            "0000/18:02.5",
            "0000:18:02.5/../..",
            "000g:18:02.5",
            "+000:18:02.5",
            "0000:+8:02.5",
        ] {
            let err = bad.parse::<PciAddress>().unwrap_err();
            assert!(
                matches!(err, VfioError::InvalidAddress(ref s) if s == bad),
                "{bad:?} gave {err}"
            );
        }
    }
}
