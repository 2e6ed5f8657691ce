//! `evectl`'s library: the admin API client that `evectl`, the tests and
//! xtask use ([`admin`]), datastores and content status ([`content`]),
//! apps in a device's config ([`apps`], their ACL rules in [`acl`]) and as
//! the device reports them ([`appview`]), network instances ([`networks`],
//! [`netview`]), flow logs ([`flowview`]), base OS updates and device
//! operations ([`devops`]), config items ([`configitems`]), and
//! the host benchmark of EVE's message hot paths
//! ([`bench`]).
#![forbid(unsafe_code)]

pub mod acl;
pub mod admin;
pub mod apps;
pub mod appview;
pub mod bench;
pub mod configitems;
pub mod content;
pub mod devops;
pub mod flowview;
pub mod netview;
pub mod networks;
