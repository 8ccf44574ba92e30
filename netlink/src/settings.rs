//! A netconf's VF settings as a whole: applied in order with rollback on a
//! refusal, restored to a recorded original, compared with what the PF says.

use crate::error::{NetlinkError, Result};
use crate::types::{VfNetlink, VfSettings, VfState};

/// Applies the settings one by one. On the first refusal, puts back what
/// was already changed and returns that refusal.
pub fn apply_vf_settings(
    nl: &mut dyn VfNetlink,
    pf: &str,
    vf: u32,
    want: &VfSettings,
    original: &VfState,
) -> Result<()> {
    let mut done = VfSettings::default();
    for attr in want.attrs() {
        if let Err(e) = nl.set_vf(pf, vf, attr) {
            // Best effort: the refusal is the error worth reporting.
            let _ = restore_vf_settings(nl, pf, vf, &done, original);
            return Err(e);
        }
        done.set(attr);
    }
    Ok(())
}

/// Puts every field named in `touched` back to its value in `original`,
/// skipping fields that already have it (and fields the driver does not
/// report). Carries on past failures and returns the first.
pub fn restore_vf_settings(
    nl: &mut dyn VfNetlink,
    pf: &str,
    vf: u32,
    touched: &VfSettings,
    original: &VfState,
) -> Result<()> {
    let now = nl.vf_state(pf, vf)?;
    let mut first: Option<NetlinkError> = None;
    for attr in touched.attrs() {
        let Some(orig) = attr.current(original) else {
            continue;
        };
        if attr.current(&now) != Some(orig) {
            if let Err(e) = nl.set_vf(pf, vf, orig) {
                first.get_or_insert(e);
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The settings in `want` that `now` does not have, described for a message.
pub fn vf_drift(want: &VfSettings, now: &VfState) -> Vec<String> {
    want.attrs()
        .into_iter()
        .filter_map(|attr| {
            let is = attr.current(now);
            let (field, want) = attr.field_value();
            (is != Some(attr)).then(|| match is {
                Some(is) => format!("{field} is {} instead of {want}", is.field_value().1),
                None => format!("{field} {want} asked for, but the PF does not report it"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MacAddr, Rate};

    #[test]
    fn drift_names_each_differing_field() {
        let want = VfSettings {
            mac: Some("02:00:00:00:00:01".parse().unwrap()),
            trust: Some(true),
            rate: Some(Rate { min: 0, max: 100 }),
            ..VfSettings::default()
        };
        let mut now = VfState {
            mac: "02:00:00:00:00:01".parse::<MacAddr>().unwrap(),
            trust: Some(false),
            ..VfState::default()
        };
        let d = vf_drift(&want, &now);
        assert_eq!(
            d,
            [
                "trust is off instead of on",
                "min/max tx rate is 0/0 Mbps instead of 0/100 Mbps"
            ]
        );
        now.trust = None;
        now.max_tx_rate = 100;
        assert_eq!(
            vf_drift(&want, &now),
            ["trust on asked for, but the PF does not report it"]
        );
    }
}
