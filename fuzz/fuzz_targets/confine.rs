#![no_main]
//! `paths::confine`, the gate of every file a netconf names, over a tree
//! laid with traps: symlinks out of the allowed directories (relative,
//! absolute, out of the root altogether), a loop, a symlink to a file
//! outside, a symlink between two allowed directories. A path it accepts
//! lies in one of the allowed directories once resolved, its directory
//! holds no symlink, and it is no symlink itself; nothing is made outside
//! the allowed directories but those directories themselves.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use arbitrary::Arbitrary;
use dpdk_cni::paths::confine;
use fuzzkit::{assert_plain_file_path, strictly_below};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Which of [`DIRS`] are allowed.
    dirs: u8,
    path: Path_,
}

#[derive(Debug, Arbitrary)]
enum Path_ {
    /// One of [`PREFIXES`], then parts.
    Under(u8, Vec<Part>),
    Parts(Vec<Part>),
    Text(String),
}

#[derive(Debug, Arbitrary)]
enum Part {
    Name(u8),
    Dot,
    DotDot,
    Empty,
    Text(String),
}

/// The directories a caller may allow, below the root; the last two do
/// not exist until allowed.
const DIRS: &[&str] = &[
    "var/log",
    "tmp",
    "var/log/sub",
    "var/run/k8s.cni.cncf.io/devinfo",
    "srv/new/logs",
];

/// Where a path starts: the allowed directories, and the traps in them.
const PREFIXES: &[&str] = &[
    "/var/log",
    "/tmp",
    "/var/log/sub",
    "/var/run/k8s.cni.cncf.io/devinfo",
    "/srv/new/logs",
    "/var/log/in",
    "/var/log/rel",
    "/var/log/out",
    "/var/log/up",
    "/var/log/abs",
    "/var/log/loop",
    "/var/log/lnk.log",
    "/var/log/file.log",
    "/tmp/logs-link",
    "/tmp/up",
];

/// Names the path parts are made of: the tree's, and a few new ones.
const NAMES: &[&str] = &[
    "var",
    "log",
    "tmp",
    "sub",
    "run",
    "k8s.cni.cncf.io",
    "devinfo",
    "srv",
    "new",
    "logs",
    "etc",
    "shadow",
    "in",
    "rel",
    "out",
    "up",
    "abs",
    "loop",
    "file.log",
    "lnk.log",
    "dir",
    "logs-link",
    "x.json",
    "a",
    "b",
];

struct Tree {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    /// The tree as laid, before any call.
    laid: BTreeMap<String, String>,
    /// The last call made something: lay the tree anew.
    dirty: Cell<bool>,
}

thread_local! {
    static TREE: Tree = {
        let t = tempfile::tempdir().expect("a temporary directory");
        let base = t.path().canonicalize().unwrap();
        let root = base.join("node");
        lay(&base, &root);
        let laid = snapshot(&base);
        Tree { _tmp: t, base, root, laid, dirty: Cell::new(false) }
    };
}

fn lay(base: &Path, root: &Path) {
    let _ = std::fs::remove_dir_all(root);
    let _ = std::fs::remove_dir_all(base.join("outside"));
    let mk = |p: &str| std::fs::create_dir_all(root.join(p)).unwrap();
    let put = |p: &Path, s: &str| std::fs::write(p, s).unwrap();
    for d in ["var/log/sub", "var/log/dir", "tmp", "etc", "var/lib"] {
        mk(d);
    }
    std::fs::create_dir_all(base.join("outside")).unwrap();
    put(&base.join("outside/secret"), "outside\n");
    put(&root.join("etc/shadow"), "root:x\n");
    put(&root.join("var/log/file.log"), "log\n");
    let log = root.join("var/log");
    symlink(log.join("sub"), log.join("in")).unwrap();
    symlink("sub", log.join("rel")).unwrap();
    symlink(root.join("etc"), log.join("out")).unwrap();
    symlink("../../etc", log.join("up")).unwrap();
    symlink(base.join("outside"), log.join("abs")).unwrap();
    symlink("loop", log.join("loop")).unwrap();
    symlink(base.join("outside/secret"), log.join("lnk.log")).unwrap();
    symlink(root.join("var/log"), root.join("tmp/logs-link")).unwrap();
    symlink("../var/lib", root.join("tmp/up")).unwrap();
}

/// Every entry below `dir`: a directory, a file's content, a link's target.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let m = p.symlink_metadata().unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel, "<dir>".into());
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

fuzz_target!(|input: Input| {
    let path = match &input.path {
        Path_::Text(s) => s.clone(),
        Path_::Under(_, parts) | Path_::Parts(parts) => {
            let mut s = match &input.path {
                Path_::Under(i, _) => PREFIXES[*i as usize % PREFIXES.len()].to_string(),
                _ => String::new(),
            };
            for p in parts {
                s.push('/');
                s.push_str(match p {
                    Part::Name(i) => NAMES[*i as usize % NAMES.len()],
                    Part::Dot => ".",
                    Part::DotDot => "..",
                    Part::Empty => "",
                    Part::Text(t) => t,
                });
            }
            s
        }
    };
    TREE.with(|t| {
        if t.dirty.get() {
            lay(&t.base, &t.root);
        }
        let dirs: Vec<PathBuf> = DIRS
            .iter()
            .enumerate()
            .filter(|(i, _)| input.dirs & (1 << i) != 0)
            .map(|(_, d)| t.root.join(d))
            .collect();
        let res = confine(&t.root, &path, &dirs);
        let real: Vec<PathBuf> = dirs.iter().filter_map(|d| d.canonicalize().ok()).collect();
        match &res {
            Ok(p) => {
                assert!(
                    real.iter().any(|d| strictly_below(p, d)),
                    "{path:?} -> {} is outside {real:?}",
                    p.display()
                );
                assert_plain_file_path(p);
            }
            Err(why) => assert!(!why.trim().is_empty()),
        }
        // Nothing new or changed outside the allowed directories, but the
        // directories themselves and the ones leading to them.
        let after = snapshot(&t.base);
        for (k, v) in &after {
            let at = t.base.join(k);
            let allowed = dirs
                .iter()
                .chain(&real)
                .any(|d| at.starts_with(d) || (d.starts_with(&at) && v == "<dir>"));
            if !allowed {
                assert_eq!(
                    t.laid.get(k),
                    Some(v),
                    "{path:?} (allowed {dirs:?}) made or changed {k}: {res:?}"
                );
            }
        }
        for k in t.laid.keys() {
            assert!(after.contains_key(k), "{path:?} removed {k}");
        }
        t.dirty.set(after != t.laid);
    });
});
