//! GUID partition tables (read, check, repair, write) and the A/B choice
//! EVE makes on their attribute bits.
//!
//! The table side follows the UEFI specification as GRUB's `gpt` module
//! (the one EVE's boot loader carries) checks it: a protective MBR, a
//! primary header at LBA 1 and a backup header at the end of the disk, each
//! with its own copy of the entry array, each copy CRC-checked. A copy that
//! fails any check is ignored and the other one is used; both copies are
//! rewritten from the good one by [`Gpt::repair`]. Nothing here panics on
//! what a disk holds: counts and sizes are checked before anything is
//! allocated or indexed.
//!
//! The A/B side ([`ab`]) is EVE's `gptprio` scheme: the IMGA and IMGB
//! partitions carry a priority, a count of tries left and a successful
//! flag in attribute bits 48 to 56; the boot loader picks the highest
//! priority partition that is successful or has tries left, and spends a
//! try on one that is not yet successful.
//!
//! Portable (`no_std` + `alloc`) so the same code runs in the UEFI loader,
//! in the host and in host tests; the `std` feature adds [`FileDisk`], a
//! disk over a std file or block device, for the host and its tools.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod ab;
mod disk;
mod entry;
#[cfg(feature = "std")]
mod file;
mod guid;
mod header;
mod mbr;
mod table;

pub use disk::{Blocks, Disk, DiskError, valid_block_size};
pub use entry::{ENTRY_NAME_UNITS, Partition};
#[cfg(feature = "std")]
pub use file::{DEFAULT_BLOCK_SIZE, FileDisk, byte_len, logical_block_size};
pub use guid::{Guid, types};
pub use header::Invalid;
pub use mbr::{has_protective_mbr, protective_mbr};
pub use table::{
    Copy, CopyStatus, Gpt, GrowDiskError, GrowError, Grown, LayoutError, MAX_ENTRY_ARRAY_BYTES,
    NewPartition, ReadError, Status, UpdateError, grow_onto_disk,
};
