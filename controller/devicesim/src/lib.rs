//! Clients of our EVE controller, independent of its code: a keep-alive
//! HTTP/1.1 client ([`http`]), simulated EVE devices ([`device`]) and the
//! load generator built on them. Used by the controller's tests, `evectl`
//! and the benchmarks.
#![forbid(unsafe_code)]

pub mod device;
pub mod http;
