//! Our EVE controller: the device API (EVE API v2 over TLS), its storage,
//! the admin API, and the `evectl` tooling (EVE's `pbuf` idea: turn API
//! messages into JSON and back, and open signed envelopes).

pub mod admin;
pub mod adminctl;
pub mod bench;
pub mod client;
pub mod configspec;
pub mod identity;
pub mod newlog;
pub mod pbuf;
pub mod quote;
pub mod server;
pub mod store;
