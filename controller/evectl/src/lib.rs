//! `evectl`'s library: the admin API client that `evectl`, the tests and
//! xtask use ([`admin`]), and the host benchmark of EVE's message hot paths
//! ([`bench`]).
#![forbid(unsafe_code)]

pub mod admin;
pub mod bench;
