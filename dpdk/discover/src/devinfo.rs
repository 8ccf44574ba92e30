//! NPWG device-info documents (Device Information Specification 1.1.0 plus our
//! extra keys), as found in the device-info directory, in Multus's
//! `k8s.v1.cni.cncf.io/network-status` annotation, and in the downward-API
//! annotations file.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{DiscoverError, Result};
use crate::resolve::{af_packet_vdev, DeviceClaim};
use crate::{DeviceKind, PciAddress};

/// The pod annotation Multus writes the attachment results to.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";

/// Parse one device-info document into what it says about its device.
/// `Ok(None)` for a device type DPDK cannot use (`vdpa`, `accelerator`, ...).
pub fn parse_device_info(origin: &str, doc: &Value) -> Result<Option<DeviceClaim>> {
    let missing = |field| DiscoverError::DeviceInfoMissing {
        origin: origin.to_owned(),
        field,
    };
    let wrong = |field, value: &Value, want| DiscoverError::DeviceInfoField {
        origin: origin.to_owned(),
        field,
        value: value.to_string(),
        want,
    };
    let obj = doc
        .as_object()
        .ok_or_else(|| wrong("(document)", doc, "an object"))?;
    let ty = obj.get("type").ok_or_else(|| missing("type"))?;
    let ty = ty.as_str().ok_or_else(|| wrong("type", ty, "a string"))?;
    if ty != "pci" {
        return Ok(None);
    }
    let pci = obj.get("pci").ok_or_else(|| missing("pci"))?;
    let pci = pci
        .as_object()
        .ok_or_else(|| wrong("pci", pci, "an object"))?;
    let string = |field: &'static str| -> Result<Option<&str>> {
        match pci.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(wrong(field, v, "a string")),
        }
    };
    let numa_node = match pci.get("numa-node") {
        None | Some(Value::Null) => None,
        Some(v) => parse_numa_node(origin, v)?,
    };
    let pci_address = match string("pci-address")? {
        Some(text) => Some(parse_pci(origin, text)?),
        None => None,
    };
    let stated = match string("device-type")? {
        Some("netdevice") => {
            let iface = string("interface")?.ok_or_else(|| missing("interface"))?;
            let vdev = match string("eal-vdev")? {
                Some(v) => v.to_owned(),
                None => af_packet_vdev(iface),
            };
            Some(DeviceKind::Netdevice {
                interface: iface.to_owned(),
                vdev,
            })
        }
        Some("vfio-pci") => Some(DeviceKind::Vfio {
            pci: pci_address.ok_or_else(|| missing("pci-address"))?,
        }),
        // The spec fields only (sriov-cni, the device plugin, and whatever
        // Multus copies into network-status): the pod's sysfs decides.
        None if pci_address.is_none() => return Err(missing("pci-address")),
        None => None,
        Some(other) => {
            return Err(DiscoverError::UnknownDeviceType {
                origin: origin.to_owned(),
                value: other.to_owned(),
            })
        }
    };
    Ok(Some(DeviceClaim {
        origin: origin.to_owned(),
        pci: pci_address,
        stated,
        numa_node,
        rdma_device: string("rdma-device")?.map(str::to_owned),
    }))
}

pub(crate) fn parse_pci(origin: &str, text: &str) -> Result<PciAddress> {
    text.trim()
        .parse()
        .map_err(|_| DiscoverError::BadPciAddress {
            origin: origin.to_owned(),
            value: text.to_owned(),
        })
}

/// A NUMA node as a number or a numeric string; -1 means unknown.
pub(crate) fn parse_numa_node(origin: &str, v: &Value) -> Result<Option<u32>> {
    let bad = || DiscoverError::BadNumaNode {
        origin: origin.to_owned(),
        value: v.to_string(),
    };
    let n = match v {
        Value::Number(n) => n.as_i64().ok_or_else(bad)?,
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    match n {
        -1 => Ok(None),
        n => u32::try_from(n).map(Some).map_err(|_| bad()),
    }
}

/// Every `*.json` document in the device-info directory, in name order.
pub fn read_devinfo_dir(dir: &Path) -> Result<Vec<DeviceClaim>> {
    let read_err = |source| DiscoverError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut devices = Vec::new();
    for path in paths {
        let origin = path.display().to_string();
        let text = std::fs::read(&path).map_err(|source| DiscoverError::Read {
            path: path.clone(),
            source,
        })?;
        let doc: Value =
            serde_json::from_slice(&text).map_err(|source| DiscoverError::DeviceInfoJson {
                origin: origin.clone(),
                source,
            })?;
        devices.extend(parse_device_info(&origin, &doc)?);
    }
    Ok(devices)
}

/// The devices in a network-status annotation value: a JSON list of
/// `{name, interface, ips, mac, mtu, default, dns, device-info}`. Entries
/// without device-info (the cluster network) are skipped.
pub fn parse_network_status(origin: &str, json: &str) -> Result<Vec<DeviceClaim>> {
    let list: Vec<Value> =
        serde_json::from_str(json).map_err(|source| DiscoverError::NetworkStatusJson {
            origin: origin.to_owned(),
            source,
        })?;
    let mut devices = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let Some(info) = entry.get("device-info") else {
            continue;
        };
        let name = entry.get("name").and_then(Value::as_str).unwrap_or("?");
        let iface = entry
            .get("interface")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let origin = format!("{origin}[{i}] ({name} {iface})");
        devices.extend(parse_device_info(&origin, info)?);
    }
    Ok(devices)
}

/// The value of `key` in a downward-API annotations file (lines of
/// `key="Go-quoted value"`), or `None` when the pod has no such annotation.
pub fn read_annotation(path: &Path, key: &str) -> Result<Option<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| DiscoverError::Read {
        path: path.to_owned(),
        source,
    })?;
    for (i, line) in text.lines().enumerate() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() != key {
            continue;
        }
        return unquote_go(v.trim())
            .map(Some)
            .map_err(|reason| DiscoverError::AnnotationLine {
                path: path.to_owned(),
                line: i + 1,
                reason,
            });
    }
    Ok(None)
}

/// Undo Go's `strconv.Quote`, which the kubelet uses for annotation values.
fn unquote_go(s: &str) -> std::result::Result<String, String> {
    let inner = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .filter(|_| s.len() >= 2)
        .ok_or_else(|| "value is not a double-quoted string".to_owned())?;
    let mut out = String::with_capacity(inner.len());
    let mut bytes: Vec<u8> = Vec::new();
    let mut chars = inner.chars();
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> std::result::Result<u32, String> {
        let t: String = chars.by_ref().take(n).collect();
        if t.len() != n {
            return Err(format!("short escape \\{t}"));
        }
        u32::from_str_radix(&t, 16).map_err(|_| format!("bad hex escape {t:?}"))
    };
    let flush = |bytes: &mut Vec<u8>, out: &mut String| -> std::result::Result<(), String> {
        if !bytes.is_empty() {
            out.push_str(std::str::from_utf8(bytes).map_err(|e| e.to_string())?);
            bytes.clear();
        }
        Ok(())
    };
    while let Some(c) = chars.next() {
        if c == '"' {
            return Err("unescaped quote inside the value".to_owned());
        }
        if c != '\\' {
            flush(&mut bytes, &mut out)?;
            out.push(c);
            continue;
        }
        let esc = chars
            .next()
            .ok_or_else(|| "trailing backslash".to_owned())?;
        let ch = match esc {
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\x0b',
            '\\' | '"' | '\'' => esc,
            'x' => {
                // Raw bytes (possibly part of a UTF-8 sequence).
                bytes.push(hex(&mut chars, 2)? as u8);
                continue;
            }
            'u' | 'U' => {
                let n = hex(&mut chars, if esc == 'u' { 4 } else { 8 })?;
                char::from_u32(n).ok_or_else(|| format!("bad code point {n:#x}"))?
            }
            d @ '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let n = u32::from_str_radix(&format!("{d}{rest}"), 8)
                    .map_err(|_| format!("bad octal escape \\{d}{rest}"))?;
                bytes.push(u8::try_from(n).map_err(|_| "octal escape over 255".to_owned())?);
                continue;
            }
            other => return Err(format!("unknown escape \\{other}")),
        };
        flush(&mut bytes, &mut out)?;
        out.push(ch);
    }
    flush(&mut bytes, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquotes_go_strings() {
        assert_eq!(
            unquote_go(r#""[{\"name\":\"a\",\"x\":\"\u00e9\\n\"}]""#).unwrap(),
            "[{\"name\":\"a\",\"x\":\"\u{e9}\\n\"}]"
        );
        assert_eq!(unquote_go(r#""a\nb\x41\101""#).unwrap(), "a\nbAA");
        assert!(unquote_go("noquotes").is_err());
        assert!(unquote_go(r#""bad \q""#).is_err());
        assert!(unquote_go(r#""trailing \""#).is_err());
        assert!(unquote_go("\"").is_err());
    }
}
