//! The node bus's byte stream: port 0 of a virtio console, which the host
//! connects to its broker through a unix socket. Ordered and reliable like
//! a pipe; framing is the bus crate's business.

use alloc::vec::Vec;

use virtio_drivers::{
    device::console::VirtIOConsole,
    transport::{DeviceType, SomeTransport},
};

use crate::virtio::VirtioHal;

/// Most bytes taken from the device per [`BusPort::read_available`] call,
/// so one call cannot stall a poll loop on a flood.
const READ_BUDGET: usize = 64 * 1024;

/// The bus's virtio console port.
pub struct BusPort {
    console: VirtIOConsole<VirtioHal, SomeTransport<'static>>,
}

/// Why the port could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortError {
    /// The machine has no virtio console.
    NotFound,
    /// The device failed.
    Device,
}

impl BusPort {
    /// Takes the machine's virtio console.
    pub fn open() -> Result<BusPort, PortError> {
        crate::virtio::discover(crate::startup::boot_info());
        let transport = crate::virtio::take(DeviceType::Console).ok_or(PortError::NotFound)?;
        let console = VirtIOConsole::new(transport).map_err(|_| PortError::Device)?;
        Ok(BusPort { console })
    }

    /// Sends all of `bytes` (the device takes them in one descriptor).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), PortError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.console
            .send_bytes(bytes)
            .map_err(|_| PortError::Device)
    }

    /// Appends what has arrived to `into`, without waiting.
    pub fn read_available(&mut self, into: &mut Vec<u8>) -> Result<usize, PortError> {
        let mut count = 0;
        while count < READ_BUDGET {
            match self.console.recv(true) {
                Ok(Some(byte)) => {
                    into.push(byte);
                    count += 1;
                }
                Ok(None) => break,
                Err(_) => return Err(PortError::Device),
            }
        }
        Ok(count)
    }
}
