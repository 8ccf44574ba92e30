use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{LinkState, MacAddr, NetlinkError, Result, VfNetlink, VfState, VlanProto};

/// A fake PF driver for tests: keeps each PF's VF state in a JSON file (so
/// separate plugin processes share it), refuses the settings the file says
/// its driver refuses, and appends every change to `<file>.calls`, one
/// `ip link`-like line each.
#[derive(Debug, Clone)]
pub struct RecordingNetlink {
    path: PathBuf,
}

/// The content of the state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FakeLinks {
    pub links: BTreeMap<String, FakePf>,
}

/// One fake PF: its VFs, and what its driver refuses (`mac`, `vlan`,
/// `vlan_proto`, `spoofchk`, `trust`, `link_state`, `rate`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FakePf {
    pub vfs: Vec<VfState>,
    #[serde(default)]
    pub refuse: Vec<String>,
}

impl RecordingNetlink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RecordingNetlink { path: path.into() }
    }

    /// Writes a state file with PFs of `numvfs` VFs in their default state
    /// (spoofchk on, trust off, as most PF drivers start).
    pub fn create(path: impl Into<PathBuf>, pfs: &[(&str, u32)]) -> std::io::Result<Self> {
        let me = Self::new(path);
        let mut links = FakeLinks::default();
        for (name, n) in pfs {
            let vf = VfState {
                spoofchk: Some(true),
                trust: Some(false),
                ..VfState::default()
            };
            links.links.insert(
                name.to_string(),
                FakePf {
                    vfs: vec![vf; *n as usize],
                    refuse: Vec::new(),
                },
            );
        }
        me.store(&links)?;
        Ok(me)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn calls_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".calls");
        PathBuf::from(p)
    }

    /// Every change so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.calls_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn load(&self) -> std::io::Result<FakeLinks> {
        let s = fs::read_to_string(&self.path)?;
        serde_json::from_str(&s).map_err(std::io::Error::other)
    }

    pub fn store(&self, links: &FakeLinks) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(links)?)?;
        fs::rename(tmp, &self.path)
    }

    /// Makes the fake driver of `pf` refuse a setting, as igb refuses `link_state`.
    pub fn refuse(&self, pf: &str, what: &str) -> std::io::Result<()> {
        let mut links = self.load()?;
        if let Some(p) = links.links.get_mut(pf) {
            p.refuse.push(what.to_string());
        }
        self.store(&links)
    }

    fn lock(&self) -> std::io::Result<nix::fcntl::Flock<fs::File>> {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(p))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e.into())
    }

    fn change(
        &mut self,
        pf: &str,
        vf: u32,
        kind: &str,
        what: String,
        f: impl FnOnce(&mut VfState),
    ) -> Result<()> {
        let other = |e: std::io::Error| NetlinkError::Other {
            pf: pf.to_string(),
            msg: e.to_string(),
        };
        let _guard = self.lock().map_err(other)?;
        let mut links = self.load().map_err(other)?;
        let link = links
            .links
            .get_mut(pf)
            .ok_or_else(|| NetlinkError::NoSuchLink(pf.to_string()))?;
        let count = link.vfs.len();
        if link.refuse.iter().any(|r| r == kind) {
            self.log(&format!("refused {pf} vf {vf} {what}"))
                .map_err(other)?;
            return Err(NetlinkError::Refused {
                pf: pf.to_string(),
                vf,
                what,
                source: std::io::Error::from_raw_os_error(nix::errno::Errno::EOPNOTSUPP as i32),
            });
        }
        let st = link
            .vfs
            .get_mut(vf as usize)
            .ok_or_else(|| NetlinkError::NoSuchVf {
                pf: pf.to_string(),
                vf,
                count,
            })?;
        f(st);
        self.store(&links).map_err(other)?;
        self.log(&format!("{pf} vf {vf} {what}")).map_err(other)
    }

    fn log(&self, line: &str) -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.calls_path())?;
        writeln!(f, "{line}")
    }
}

impl VfNetlink for RecordingNetlink {
    fn vf_state(&mut self, pf: &str, vf: u32) -> Result<VfState> {
        let links = self.load().map_err(|e| NetlinkError::Other {
            pf: pf.to_string(),
            msg: e.to_string(),
        })?;
        let link = links
            .links
            .get(pf)
            .ok_or_else(|| NetlinkError::NoSuchLink(pf.to_string()))?;
        link.vfs
            .get(vf as usize)
            .cloned()
            .ok_or(NetlinkError::NoSuchVf {
                pf: pf.to_string(),
                vf,
                count: link.vfs.len(),
            })
    }
    fn set_vf_mac(&mut self, pf: &str, vf: u32, mac: MacAddr) -> Result<()> {
        self.change(pf, vf, "mac", format!("mac {mac}"), |s| s.mac = mac)
    }
    fn set_vf_vlan(
        &mut self,
        pf: &str,
        vf: u32,
        vlan: u16,
        qos: u8,
        proto: VlanProto,
    ) -> Result<()> {
        let kind = if proto == VlanProto::Dot1Ad {
            "vlan_proto"
        } else {
            "vlan"
        };
        self.change(
            pf,
            vf,
            kind,
            format!("vlan {vlan} qos {qos} proto {proto}"),
            |s| {
                s.vlan = vlan;
                s.qos = qos;
                s.proto = proto;
            },
        )
    }
    fn set_vf_spoofchk(&mut self, pf: &str, vf: u32, on: bool) -> Result<()> {
        let w = format!("spoofchk {}", if on { "on" } else { "off" });
        self.change(pf, vf, "spoofchk", w, |s| s.spoofchk = Some(on))
    }
    fn set_vf_trust(&mut self, pf: &str, vf: u32, on: bool) -> Result<()> {
        let w = format!("trust {}", if on { "on" } else { "off" });
        self.change(pf, vf, "trust", w, |s| s.trust = Some(on))
    }
    fn set_vf_link_state(&mut self, pf: &str, vf: u32, state: LinkState) -> Result<()> {
        self.change(pf, vf, "link_state", format!("link_state {state}"), |s| {
            s.link_state = state
        })
    }
    fn set_vf_rate(&mut self, pf: &str, vf: u32, min: u32, max: u32) -> Result<()> {
        let w = format!("min_tx_rate {min} max_tx_rate {max}");
        self.change(pf, vf, "rate", w, |s| {
            s.min_tx_rate = min;
            s.max_tx_rate = max;
        })
    }
}
