//! Our EVE controller: the device API (EVE API v2 over TLS), its storage,
//! and the admin API. The CLI and its admin client are the `evectl` crate;
//! simulated devices and the load generator are `devicesim`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod configspec;
pub mod device_api;
pub mod domain;
pub mod identity;
pub mod newlog;
pub mod pbuf;
pub mod pgserver;
pub mod pki;
pub mod quote;
pub mod server;
pub mod store;
pub mod tls;
