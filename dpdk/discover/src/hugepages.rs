//! Hugepages as the pod sees them: its hugetlbfs mount (`/proc/self/mountinfo`)
//! and the free pages per NUMA node
//! (`/sys/devices/system/node/nodeN/hugepages/hugepages-<size>kB/free_hugepages`).

use std::path::{Path, PathBuf};

use crate::error::{DiscoverError, Result};

/// A hugetlbfs mount and the page size it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugeMount {
    pub path: PathBuf,
    pub page_size_kb: u64,
}

/// The hugetlbfs mounts in `<proc_root>/self/mountinfo`, in mount order.
pub fn hugetlbfs_mounts(proc_root: &Path) -> Result<Vec<HugeMount>> {
    let path = proc_root.join("self/mountinfo");
    let text = std::fs::read_to_string(&path).map_err(|source| DiscoverError::Read {
        path: path.clone(),
        source,
    })?;
    let mut mounts = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // 36 35 98:0 /root /mnt rw,noatime master:1 - hugetlbfs nodev rw,pagesize=2M
        let bad = || DiscoverError::BadMountInfo {
            path: path.clone(),
            line: line.to_owned(),
        };
        let (left, right) = line.split_once(" - ").ok_or_else(bad)?;
        let mount_point = left.split(' ').nth(4).ok_or_else(bad)?;
        let mut right = right.split(' ');
        if right.next() != Some("hugetlbfs") {
            continue;
        }
        let super_opts = right.nth(1).unwrap_or("");
        let page_size_kb = match super_opts
            .split(',')
            .find_map(|o| o.strip_prefix("pagesize="))
        {
            Some(size) => parse_size_kb(size)?,
            None => default_page_size_kb(proc_root)?,
        };
        mounts.push(HugeMount {
            path: PathBuf::from(unescape_octal(mount_point)),
            page_size_kb,
        });
    }
    Ok(mounts)
}

/// `2M`, `1G`, `2048k` (mount option syntax) in kB.
pub fn parse_size_kb(text: &str) -> Result<u64> {
    let bad = || DiscoverError::BadPageSize {
        value: text.to_owned(),
    };
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let kb = match unit {
        "" => n / 1024,
        "k" | "K" | "kB" => n,
        "m" | "M" | "MB" => n * 1024,
        "g" | "G" | "GB" => n * 1024 * 1024,
        _ => return Err(bad()),
    };
    if kb == 0 {
        return Err(bad());
    }
    Ok(kb)
}

/// `Hugepagesize:` from `<proc_root>/meminfo`: the size of a mount without a
/// `pagesize=` option.
fn default_page_size_kb(proc_root: &Path) -> Result<u64> {
    let path = proc_root.join("meminfo");
    let text = std::fs::read_to_string(&path).map_err(|source| DiscoverError::Read {
        path: path.clone(),
        source,
    })?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .ok_or_else(|| DiscoverError::BadPageSize {
            value: format!("no Hugepagesize in {}", path.display()),
        })?;
    parse_size_kb(&value.trim().replace(' ', ""))
}

/// Mount points escape space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], octal) {
            let n =
                u32::from(d[0] - b'0') * 64 + u32::from(d[1] - b'0') * 8 + u32::from(d[2] - b'0');
            if let Ok(n) = u8::try_from(n) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The NUMA nodes under `<sys_root>/devices/system/node`, ascending; empty on
/// a kernel without NUMA.
pub fn numa_nodes(sys_root: &Path) -> Vec<u32> {
    let mut nodes: Vec<u32> = std::fs::read_dir(sys_root.join("devices/system/node"))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("node")?
                .parse()
                .ok()
        })
        .collect();
    nodes.sort_unstable();
    nodes
}

/// Free hugepages of `size_kb` on `node`, or system-wide for `None`.
pub fn free_hugepages(sys_root: &Path, node: Option<u32>, size_kb: u64) -> Result<u64> {
    let dir = match node {
        Some(n) => sys_root.join(format!("devices/system/node/node{n}/hugepages")),
        None => sys_root.join("kernel/mm/hugepages"),
    };
    let path = dir.join(format!("hugepages-{size_kb}kB/free_hugepages"));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        // No pool of this size on the node: nothing free.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(DiscoverError::Read { path, source }),
    };
    text.trim()
        .parse()
        .map_err(|_| DiscoverError::BadHugepageCount {
            path,
            value: text.trim().to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_kb("2M").unwrap(), 2048);
        assert_eq!(parse_size_kb("1G").unwrap(), 1048576);
        assert_eq!(parse_size_kb("2048kB").unwrap(), 2048);
        assert!(parse_size_kb("huge").is_err());
        assert!(parse_size_kb("0M").is_err());
        assert!(parse_size_kb("2X").is_err());
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape_octal(r"/mnt/huge\040pages"), "/mnt/huge pages");
        assert_eq!(unescape_octal(r"/plain"), "/plain");
        assert_eq!(unescape_octal(r"/end\04"), r"/end\04");
    }
}
