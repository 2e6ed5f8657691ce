//! Networking for our unikernels: a virtio-net device under smoltcp, IPv4
//! from DHCP or from the boot command line, and TCP and UDP sockets with
//! both a poll-driven API (for services built on `runtime::poll`) and
//! blocking calls that drive the interface while they wait, each with a
//! timeout. Waits sleep until a packet's interrupt or the interface's next
//! timed work ([`Stack::poll_at`]).
//!
//! IPv6 is not built yet (see docs/architecture.md).
#![no_std]

extern crate alloc;

mod addressing;
mod device;
mod stack;
mod stream;

pub use addressing::{Addressing, AddressingError, Ipv4Config};
pub use device::VirtioNetDevice;
pub use smoltcp::wire::{IpEndpoint, Ipv4Address, Ipv4Cidr};
pub use stack::{NetError, Stack, TcpHandle, UdpHandle};
pub use stream::TcpStream;
