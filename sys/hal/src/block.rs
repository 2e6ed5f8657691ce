//! virtio-blk disks, told apart by their serial (the host names the CONFIG
//! partition `config` and a service's state volume `state`), behind the
//! `blockdev::BlockDevice` interface the disk formats are written against.
//!
//! Reads and writes sleep until the device's completion interrupt
//! ([`crate::wait_until`]); a flush, which virtio-drivers only offers
//! blocking, waits for the device with the CPU's spin hint.

use alloc::{string::String, vec::Vec};

use blockdev::{BLOCK_SIZE, BlockDevice, BlockError, check_request};
use spin::Mutex;
use virtio_drivers::{
    device::blk::{BlkReq, BlkResp, VirtIOBlk},
    transport::DeviceType,
};

use virtio_drivers::transport::SomeTransport;

use crate::virtio::VirtioHal;

/// Largest request handed to the device at once; bigger reads and writes
/// are split, so no single DMA buffer or descriptor grows without bound.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A virtio-blk disk.
pub struct VirtioBlock {
    device: VirtIOBlk<VirtioHal, SomeTransport<'static>>,
    serial: String,
    blocks: u64,
    read_only: bool,
}

/// Why [`open`] found no disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// No virtio-blk device has this serial.
    NotFound,
    /// A virtio-blk device would not initialise.
    Device,
}

/// Disks initialised while looking for another serial, kept for later.
static UNCLAIMED: Mutex<Vec<VirtioBlock>> = Mutex::new(Vec::new());

/// Takes the virtio-blk disk whose serial is `serial`.
pub fn open(serial: &str) -> Result<VirtioBlock, OpenError> {
    crate::virtio::discover(crate::startup::boot_info());
    let mut unclaimed = UNCLAIMED.lock();
    if let Some(i) = unclaimed.iter().position(|d| d.serial == serial) {
        return Ok(unclaimed.remove(i));
    }
    while let Some(transport) = crate::virtio::take(DeviceType::Block) {
        let disk = VirtioBlock::new(transport)?;
        if disk.serial == serial {
            return Ok(disk);
        }
        unclaimed.push(disk);
    }
    Err(OpenError::NotFound)
}

impl VirtioBlock {
    fn new(transport: SomeTransport<'static>) -> Result<VirtioBlock, OpenError> {
        let mut device = VirtIOBlk::new(transport).map_err(|_| OpenError::Device)?;
        let mut id = [0u8; 20];
        // A device without an ID is still usable; it just has no serial.
        let len = device.device_id(&mut id).unwrap_or(0);
        let serial = String::from_utf8_lossy(&id[..len]).into_owned();
        Ok(VirtioBlock {
            blocks: device.capacity(),
            read_only: device.readonly(),
            serial,
            device,
        })
    }

    /// The serial the host gave the disk.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Whether the host attached the disk read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Sleeps until request `token`, the only one in flight, is done. No
    /// timeout: the device holds the request's buffers until then.
    fn wait_for(&mut self, token: u16) {
        while self.device.peek_used() != Some(token) {
            crate::wait_until(None);
        }
    }
}

impl BlockDevice for VirtioBlock {
    fn block_count(&self) -> u64 {
        self.blocks
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self.blocks, lba, buf.len())?;
        for (i, part) in buf.chunks_mut(MAX_REQUEST_BYTES).enumerate() {
            let at = lba + (i * MAX_REQUEST_BYTES / BLOCK_SIZE) as u64;
            let (mut request, mut response) = (BlkReq::default(), BlkResp::default());
            // SAFETY: the device borrows `request`, `part` and `response`
            // until the request completes; nothing touches them before
            // `wait_for` has seen it complete.
            let token = unsafe {
                self.device
                    .read_blocks_nb(at as usize, &mut request, part, &mut response)
            }
            .map_err(|_| BlockError::Io)?;
            self.wait_for(token);
            // SAFETY: the same buffers as the request was started with.
            unsafe {
                self.device
                    .complete_read_blocks(token, &request, part, &mut response)
            }
            .map_err(|_| BlockError::Io)?;
        }
        Ok(())
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_request(self.blocks, lba, buf.len())?;
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        for (i, part) in buf.chunks(MAX_REQUEST_BYTES).enumerate() {
            let at = lba + (i * MAX_REQUEST_BYTES / BLOCK_SIZE) as u64;
            let (mut request, mut response) = (BlkReq::default(), BlkResp::default());
            // SAFETY: as for reads: the buffers stay untouched until the
            // request completes.
            let token = unsafe {
                self.device
                    .write_blocks_nb(at as usize, &mut request, part, &mut response)
            }
            .map_err(|_| BlockError::Io)?;
            self.wait_for(token);
            // SAFETY: the same buffers as the request was started with.
            unsafe {
                self.device
                    .complete_write_blocks(token, &request, part, &mut response)
            }
            .map_err(|_| BlockError::Io)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.device.flush().map_err(|_| BlockError::Io)
    }
}
