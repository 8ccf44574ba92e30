//! One line per event on stderr, which the container runtime keeps.

use std::time::{SystemTime, UNIX_EPOCH};

fn line(level: &str, msg: &str) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "{}.{:03} {level} dpdk-cni-node: {msg}",
        t.as_secs(),
        t.subsec_millis()
    );
}

pub fn info(msg: &str) {
    line("info", msg);
}

pub fn warn(msg: &str) {
    line("warn", msg);
}
