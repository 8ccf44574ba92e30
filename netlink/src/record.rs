use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{NetlinkError, Result};
use crate::types::{VfAttr, VfNetlink, VfState};

/// A fake PF driver for tests: keeps each VF's state in a file of its own
/// under a directory (so separate plugin processes share it, and the cost of
/// a call does not grow with the number of VFs), refuses the settings the
/// PF's `refuse` file lists, and appends every change to `calls.log`, one
/// `ip link`-like line each.
///
/// ```text
/// <dir>/<pf>/vf<N>.json   the VF's state
/// <dir>/<pf>/refuse       settings the driver refuses, one a line
/// <dir>/calls.log         every change and refusal
/// ```
#[derive(Debug, Clone)]
pub struct RecordingNetlink {
    dir: PathBuf,
}

/// Every PF's state, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FakeLinks {
    pub links: BTreeMap<String, FakePf>,
}

/// One fake PF: its VFs, and what its driver refuses (`mac`, `vlan`,
/// `vlan_proto`, `spoofchk`, `trust`, `link_state`, `rate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FakePf {
    pub vfs: Vec<VfState>,
    #[serde(default)]
    pub refuse: Vec<String>,
}

impl RecordingNetlink {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RecordingNetlink { dir: dir.into() }
    }

    /// Creates PFs of `numvfs` VFs in their default state (spoofchk on,
    /// trust off, as most PF drivers start).
    pub fn create(dir: impl Into<PathBuf>, pfs: &[(&str, u32)]) -> std::io::Result<Self> {
        let me = Self::new(dir);
        let vf = VfState {
            spoofchk: Some(true),
            trust: Some(false),
            ..VfState::default()
        };
        for (name, n) in pfs {
            fs::create_dir_all(me.dir.join(name))?;
            for i in 0..*n {
                me.store_vf(name, i, &vf)?;
            }
        }
        Ok(me)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn calls_path(&self) -> PathBuf {
        self.dir.join("calls.log")
    }

    /// Every change so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.calls_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn vf_path(&self, pf: &str, vf: u32) -> PathBuf {
        self.dir.join(pf).join(format!("vf{vf}.json"))
    }

    fn store_vf(&self, pf: &str, vf: u32, st: &VfState) -> std::io::Result<()> {
        let p = self.vf_path(pf, vf);
        let tmp = p.with_extension("tmp");
        fs::write(&tmp, serde_json::to_vec(st)?)?;
        fs::rename(tmp, p)
    }

    fn refused_list(&self, pf: &str) -> Vec<String> {
        fs::read_to_string(self.dir.join(pf).join("refuse"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every PF and VF, for assertions.
    pub fn load(&self) -> std::io::Result<FakeLinks> {
        let mut links = FakeLinks::default();
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            if !e.file_type()?.is_dir() {
                continue;
            }
            let pf = e.file_name().to_string_lossy().to_string();
            let mut vfs = Vec::new();
            for i in 0.. {
                match fs::read(self.vf_path(&pf, i)) {
                    Ok(b) => vfs.push(serde_json::from_slice(&b).map_err(std::io::Error::other)?),
                    Err(_) => break,
                }
            }
            let refuse = self.refused_list(&pf);
            links.links.insert(pf, FakePf { vfs, refuse });
        }
        Ok(links)
    }

    /// Makes the fake driver of `pf` refuse a setting, as igb refuses `link_state`.
    pub fn refuse(&self, pf: &str, what: &str) -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(pf).join("refuse"))?;
        writeln!(f, "{what}")
    }

    fn lock(&self, pf: &str, vf: u32) -> std::io::Result<nix::fcntl::Flock<fs::File>> {
        let p = self.dir.join(pf).join(format!("vf{vf}.lock"));
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(p)?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e.into())
    }

    fn read_vf(&self, pf: &str, vf: u32) -> Result<VfState> {
        if !self.dir.join(pf).is_dir() {
            return Err(NetlinkError::NoSuchLink(pf.to_string()));
        }
        match fs::read(self.vf_path(pf, vf)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| NetlinkError::Other {
                pf: pf.to_string(),
                msg: e.to_string(),
            }),
            Err(_) => Err(NetlinkError::NoSuchVf {
                pf: pf.to_string(),
                vf,
                count: fs::read_dir(self.dir.join(pf))
                    .map(|rd| {
                        rd.flatten()
                            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                            .count()
                    })
                    .unwrap_or(0),
            }),
        }
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
        let mut st = self.read_vf(pf, vf)?;
        let _guard = self.lock(pf, vf).map_err(other)?;
        if self.refused_list(pf).iter().any(|r| r == kind) {
            self.log(&format!("refused {pf} vf {vf} {what}"))
                .map_err(other)?;
            return Err(NetlinkError::Refused {
                pf: pf.to_string(),
                vf,
                what,
                source: std::io::Error::from_raw_os_error(nix::errno::Errno::EOPNOTSUPP as i32),
            });
        }
        st = self.read_vf(pf, vf).unwrap_or(st);
        f(&mut st);
        self.store_vf(pf, vf, &st).map_err(other)?;
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
        self.read_vf(pf, vf)
    }

    fn set_vf(&mut self, pf: &str, vf: u32, attr: VfAttr) -> Result<()> {
        self.change(pf, vf, attr.kind(), attr.to_string(), |s| attr.apply_to(s))
    }
}
