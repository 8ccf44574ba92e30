//! The CPUs the pod may run lcores on: the cgroup cpuset
//! (`cpuset.cpus.effective`) or `sched_getaffinity(2)`.

use std::path::Path;

use crate::error::{DiscoverError, Result};

/// Parse a kernel CPU list: `0-3,8,10-11`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>> {
    let bad = || DiscoverError::BadCpuList {
        value: text.to_owned(),
    };
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// The inverse of [`parse_cpu_list`], with ranges folded: EAL's `-l` syntax.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// CPUs of the cgroup v2 cpuset as mounted in the pod
/// (`<sys_root>/fs/cgroup/cpuset.cpus.effective`).
pub fn cpus_from_cpuset(sys_root: &Path) -> Result<Vec<usize>> {
    let path = sys_root.join("fs/cgroup/cpuset.cpus.effective");
    let text =
        std::fs::read_to_string(&path).map_err(|source| DiscoverError::Read { path, source })?;
    parse_cpu_list(&text)
}

/// The CPUs of NUMA node `node` (`<sys_root>/devices/system/node/node<N>/cpulist`);
/// `None` when the file is absent (a memory-only node, or no topology given).
pub fn node_cpus(sys_root: &Path, node: u32) -> Result<Option<Vec<usize>>> {
    let path = sys_root.join(format!("devices/system/node/node{node}/cpulist"));
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_cpu_list(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DiscoverError::Read { path, source }),
    }
}

/// CPUs this thread may run on (`sched_getaffinity(0)`).
pub fn cpus_from_affinity() -> Result<Vec<usize>> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map_err(DiscoverError::Affinity)?;
    Ok((0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let cpus = parse_cpu_list("0-3,8,10-11\n").unwrap();
        assert_eq!(cpus, vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(format_cpu_list(&cpus), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn rejects_bad_lists() {
        for bad in ["a", "3-1", "1-", "0,,x"] {
            assert!(matches!(
                parse_cpu_list(bad),
                Err(DiscoverError::BadCpuList { .. })
            ));
        }
    }

    #[test]
    fn affinity_is_not_empty() {
        assert!(!cpus_from_affinity().unwrap().is_empty());
    }
}
