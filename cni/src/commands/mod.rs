//! The CNI verbs, one file each. VERSION needs no node and is answered by
//! [`crate::cli`].

pub mod add;
pub mod check;
pub mod del;
pub mod gc;
pub mod status;
