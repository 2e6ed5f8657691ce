//! The container shim VM's init, as a library: the blob disk the host
//! writes and the shim reads ([`blobdisk`]), the host's instructions
//! ([`config`]), the image's manifest and config ([`image`]), the process
//! they describe ([`process`], [`passwd`]), layer unpacking with whiteouts
//! ([`unpack`]) and the DHCP messages of its lease ([`dhcp`]). All of it
//! is host-tested; the Linux program around it is `src/main.rs`.
#![forbid(unsafe_code)]

pub mod blobdisk;
pub mod config;
pub mod dhcp;
pub mod image;
pub mod passwd;
pub mod process;
pub mod unpack;
