//! `logLevel` / `logFile`: plain lines appended to a file (stderr when no file).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::LogLevel;

static LOG: Mutex<Option<(LogLevel, Option<PathBuf>)>> = Mutex::new(None);

/// Sets the level and destination for the rest of the process.
pub fn init(level: LogLevel, file: Option<PathBuf>) {
    *LOG.lock().unwrap_or_else(|e| e.into_inner()) = Some((level, file));
}

/// UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` from the system clock.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

pub fn log(level: LogLevel, msg: &str) {
    let guard = LOG.lock().unwrap_or_else(|e| e.into_inner());
    let Some((max, file)) = guard.as_ref() else {
        return;
    };
    if level > *max {
        return;
    }
    // One line per message, whatever the message holds: a path or name
    // from the netconf cannot start a line of its own.
    let line = format!(
        "{} [{level:?}] dpdk-cni: {}\n",
        timestamp(),
        crate::paths::escape(msg)
    );
    match file {
        Some(p) => {
            if let Ok(mut f) = crate::paths::open_append(p) {
                let _ = f.write_all(line.as_bytes());
            }
        }
        None if level <= LogLevel::Warning => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        None => {}
    }
}

pub fn info(msg: &str) {
    log(LogLevel::Info, msg)
}

pub fn debug(msg: &str) {
    log(LogLevel::Debug, msg)
}

pub fn warn(msg: &str) {
    log(LogLevel::Warning, msg)
}
