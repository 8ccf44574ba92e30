//! CNI spec versions and what changes between them.

/// The versions this plugin speaks, oldest first.
pub const SUPPORTED: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The version of a netconf that names none.
pub const IMPLICIT: &str = "0.1.0";

/// The newest supported version.
pub const LATEST: &str = "1.1.0";

fn parse(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let r = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(r)
}

/// Whether `v` is one of [`SUPPORTED`].
pub fn is_supported(v: &str) -> bool {
    SUPPORTED.contains(&v)
}

/// `v >= min`, both as `x.y.z`; false when `v` does not parse.
pub fn at_least(v: &str, min: &str) -> bool {
    match (parse(v), parse(min)) {
        (Some(a), Some(b)) => a >= b,
        _ => false,
    }
}

/// The body of a VERSION answer.
pub fn version_info(cni_version: &str) -> serde_json::Value {
    serde_json::json!({ "cniVersion": cni_version, "supportedVersions": SUPPORTED })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering() {
        assert!(at_least("1.1.0", "1.0.0"));
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(!at_least("1.x", "0.1.0"));
        assert!(is_supported("0.3.1"));
        assert!(is_supported("0.2.0"));
        assert!(!is_supported("0.5.0"));
        assert!(!is_supported("1.1"));
    }
}
