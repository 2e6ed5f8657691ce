//! `evectl`'s library: the admin API client that `evectl`, the tests and
//! xtask use ([`admin`]), datastores and content status ([`content`]),
//! apps in a device's config ([`apps`]) and as the device reports them
//! ([`appview`]), and
//! the host benchmark of EVE's message hot paths
//! ([`bench`]).
#![forbid(unsafe_code)]

pub mod admin;
pub mod apps;
pub mod appview;
pub mod bench;
pub mod content;
