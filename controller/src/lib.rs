//! Host-side EVE controller tooling. For now it holds the `evectl` logic
//! (EVE's `pbuf` idea: turn API messages into JSON and back, and open signed
//! envelopes) and the protobuf benchmark; it will grow into the controller.

pub mod bench;
pub mod pbuf;
