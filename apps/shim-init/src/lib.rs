//! The container shim VM's init, as a library: the blob disk the host
//! writes and the shim reads ([`blobdisk`]), the host's instructions
//! ([`config`]). The Linux program itself is `src/main.rs`.
#![forbid(unsafe_code)]

pub mod blobdisk;
pub mod config;
