//! The disk this loader was started from, as a `gptab::Disk`, and the
//! partitions on it.
//!
//! Firmware starts us from the EFI system partition; its device path is
//! the disk's path plus one hard-drive node. The whole disk is the
//! BlockIO handle whose path is that prefix; a partition is the BlockIO
//! handle whose path is the prefix plus a hard-drive node carrying the
//! partition's unique GUID.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use gptab::{Disk, DiskError, Guid};
use uefi::boot::{self, OpenProtocolAttributes, OpenProtocolParams, ScopedProtocol};
use uefi::proto::device_path::media::PartitionSignature;
use uefi::proto::device_path::{DevicePath, DevicePathNodeEnum};
use uefi::proto::loaded_image::LoadedImage;
use uefi::proto::media::block::BlockIO;
use uefi::proto::media::fs::SimpleFileSystem;
use uefi::{Handle, Status};

/// The end-of-path node every device path finishes with.
const END_NODE_BYTES: usize = 4;

/// Opens `P` on `handle` without taking it from the drivers that use it:
/// the partition and FAT drivers keep running on the disk we read.
fn open_shared<P: uefi::proto::ProtocolPointer + ?Sized>(
    handle: Handle,
) -> uefi::Result<ScopedProtocol<P>> {
    // SAFETY: we only read through DevicePath, and BlockIO is used by one
    // caller at a time (this loader is the only code running); nothing
    // uninstalls these protocols while we hold them, since we start no
    // driver and disconnect nothing.
    unsafe {
        boot::open_protocol::<P>(
            OpenProtocolParams {
                handle,
                agent: boot::image_handle(),
                controller: None,
            },
            OpenProtocolAttributes::GetProtocol,
        )
    }
}

/// The device path of `handle`, as bytes without the end node.
fn path_prefix(handle: Handle) -> Option<Vec<u8>> {
    let path = open_shared::<DevicePath>(handle).ok()?;
    let bytes = path.as_bytes();
    Some(bytes[..bytes.len().checked_sub(END_NODE_BYTES)?].to_vec())
}

/// The partition GUID of the path's last node, if it is a GPT hard drive.
fn partition_guid(handle: Handle) -> Option<Guid> {
    let path = open_shared::<DevicePath>(handle).ok()?;
    let last = path.node_iter().last()?;
    match last.as_enum().ok()? {
        DevicePathNodeEnum::MediaHardDrive(hd) => match hd.partition_signature() {
            PartitionSignature::Guid(guid) => Some(Guid(guid.to_bytes())),
            _ => None,
        },
        _ => None,
    }
}

/// The disk the loader runs from.
pub struct BootDisk {
    block_io: ScopedProtocol<BlockIO>,
    /// The disk's device path without its end node.
    prefix: Vec<u8>,
}

impl BootDisk {
    /// The whole disk holding the partition this image was loaded from.
    pub fn of_this_image() -> Result<BootDisk, String> {
        let loaded = boot::open_protocol_exclusive::<LoadedImage>(boot::image_handle())
            .map_err(|e| format!("no loaded-image protocol: {e}"))?;
        let esp = loaded
            .device()
            .ok_or("the firmware did not say which device we were loaded from")?;
        let esp_path =
            path_prefix(esp).ok_or("the device we were loaded from has no device path")?;
        let handles =
            boot::find_handles::<BlockIO>().map_err(|e| format!("no block devices: {e}"))?;
        for handle in handles {
            let Ok(block_io) = open_shared::<BlockIO>(handle) else {
                continue;
            };
            if block_io.media().is_logical_partition() || !block_io.media().is_media_present() {
                continue;
            }
            let Some(prefix) = path_prefix(handle) else {
                continue;
            };
            if esp_path.len() > prefix.len() && esp_path.starts_with(&prefix) {
                return Ok(BootDisk { block_io, prefix });
            }
        }
        Err(String::from(
            "cannot find the disk holding the EFI system partition we were loaded from",
        ))
    }

    /// The file system of the partition `guid` on this disk, connecting
    /// the firmware's FAT driver to it if nothing has yet.
    pub fn open_partition(&self, guid: Guid) -> Result<ScopedProtocol<SimpleFileSystem>, String> {
        let handles =
            boot::find_handles::<BlockIO>().map_err(|e| format!("no block devices: {e}"))?;
        let handle = handles
            .into_iter()
            .find(|&h| {
                partition_guid(h) == Some(guid)
                    && path_prefix(h).is_some_and(|p| p.starts_with(&self.prefix))
            })
            .ok_or_else(|| format!("the firmware shows no partition {guid}"))?;
        // Firmware that connects only the boot partition (fast boot) has
        // not bound a file system driver to this one yet; one already
        // bound makes this a no-op.
        let _ = boot::connect_controller(handle, &[], None, true);
        boot::open_protocol_exclusive::<SimpleFileSystem>(handle)
            .map_err(|e| format!("no FAT file system on the partition ({e})"))
    }

    /// A buffer of `len` bytes at the alignment the disk's DMA wants, as a
    /// window into a larger vector.
    fn aligned(&self, len: usize) -> (Vec<u8>, usize) {
        let align = (self.block_io.media().io_align() as usize).max(1);
        let buf = vec![0u8; len + align];
        let offset = buf.as_ptr().align_offset(align);
        (buf, offset)
    }
}

fn disk_error(status: Status) -> DiskError {
    match status {
        Status::WRITE_PROTECTED => DiskError::ReadOnly,
        Status::INVALID_PARAMETER | Status::BAD_BUFFER_SIZE => DiskError::OutOfRange,
        _ => DiskError::Io,
    }
}

impl Disk for BootDisk {
    fn block_size(&self) -> usize {
        self.block_io.media().block_size() as usize
    }

    fn block_count(&self) -> u64 {
        self.block_io.media().last_block().saturating_add(1)
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let (mut bounce, at) = self.aligned(buf.len());
        let media = self.block_io.media().media_id();
        self.block_io
            .read_blocks(media, lba, &mut bounce[at..at + buf.len()])
            .map_err(|e| disk_error(e.status()))?;
        buf.copy_from_slice(&bounce[at..at + buf.len()]);
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), DiskError> {
        let (mut bounce, at) = self.aligned(buf.len());
        bounce[at..at + buf.len()].copy_from_slice(buf);
        let media = self.block_io.media().media_id();
        self.block_io
            .write_blocks(media, lba, &bounce[at..at + buf.len()])
            .map_err(|e| disk_error(e.status()))
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.block_io
            .flush_blocks()
            .map_err(|e| disk_error(e.status()))
    }
}
