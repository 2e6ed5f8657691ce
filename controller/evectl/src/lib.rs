//! `evectl`'s library: the admin API client that `evectl`, the tests and
//! xtask use ([`admin`]), datastores and content status ([`content`]), and
//! the host benchmark of EVE's message hot paths
//! ([`bench`]).
#![forbid(unsafe_code)]

pub mod admin;
pub mod bench;
pub mod content;
