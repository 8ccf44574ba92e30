//! The device plugin compatibility data (`tests/compat/device-plugin/`,
//! described in `tests/compat/README.md`): the SR-IOV network device
//! plugin's ConfigMap `config.json` bodies, each with the pools upstream
//! builds from it on the node `node.json` describes ([`case`]), and that
//! node as a fake sysfs tree ([`fake_node`]).
#![allow(dead_code)]

pub mod case;
pub mod fake_node;
