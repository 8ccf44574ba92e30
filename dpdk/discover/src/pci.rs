use std::fmt;
use std::str::FromStr;

/// A PCI address as DPDK's `-a` takes it: `dddd:bb:dd.f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

/// The text was not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPciAddress;

impl FromStr for PciAddress {
    type Err = BadPciAddress;

    /// Parse `dddd:bb:dd.f`, or `bb:dd.f` with domain 0 (lspci's short form).
    fn from_str(s: &str) -> Result<Self, BadPciAddress> {
        let hex = |t: &str, max_len: usize| -> Result<u32, BadPciAddress> {
            if t.is_empty() || t.len() > max_len || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BadPciAddress);
            }
            u32::from_str_radix(t, 16).map_err(|_| BadPciAddress)
        };
        let (rest, function) = s.rsplit_once('.').ok_or(BadPciAddress)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, v] => (hex(d, 4)?, hex(b, 2)?, hex(v, 2)?),
            [b, v] => (0, hex(b, 2)?, hex(v, 2)?),
            _ => return Err(BadPciAddress),
        };
        let function = hex(function, 1)?;
        if device > 0x1f || function > 7 {
            return Err(BadPciAddress);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_short_forms() {
        let a: PciAddress = "0000:01:10.0".parse().unwrap();
        assert_eq!(a.to_string(), "0000:01:10.0");
        let b: PciAddress = "3b:02.7".parse().unwrap();
        assert_eq!(b.to_string(), "0000:3b:02.7");
        let c: PciAddress = "ABCD:FF:1f.7".parse().unwrap();
        assert_eq!(c.to_string(), "abcd:ff:1f.7");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "0000:01:10",
            "0000:01:10.8",
            "0000:01:20.0",
            "00000:01:10.0",
            "0000:001:10.0",
            "zz:01.0",
            "0000:01:10.0.1",
            "net1",
            "0000:01:10.-1",
        ] {
            assert_eq!(bad.parse::<PciAddress>(), Err(BadPciAddress), "{bad}");
        }
    }
}
