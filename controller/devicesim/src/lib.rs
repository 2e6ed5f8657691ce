//! Clients of our EVE controller, independent of its code: a keep-alive
//! HTTP/1.1 client ([`http`]), simulated EVE devices ([`device`]), the
//! onboarding walk ([`onboard`]) and the fleet simulator ([`fleet`]) that
//! is also the controller benchmark's load. Used by the controller's
//! tests, `evectl`, xtask and the `devicesim` binary.

pub mod device;
pub mod fleet;
pub mod http;
pub mod onboard;
