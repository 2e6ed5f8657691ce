//! PCI through the legacy configuration ports 0xcf8/0xcfc, which every PC
//! chipset (q35 included) decodes before firmware sets anything up. Fast
//! firmware such as qboot leaves BARs unassigned, so we assign them.
//!
//! Interrupts are legacy INTx through the I/O APIC (MSI-X stays off): each
//! virtio device is acknowledged by reading its ISR status byte, which we
//! find in its virtio capabilities.

use alloc::vec::Vec;

use virtio_drivers::transport::{
    SomeTransport,
    pci::{
        PciTransport,
        bus::{BarInfo, Command, ConfigurationAccess, DeviceFunction, PciRoot},
    },
};

use super::{
    interrupts,
    port::{inl, outl},
};
use crate::{irq, virtio::VirtioHal};

const VIRTIO_VENDOR: u16 = 0x1af4;
/// Where we place unassigned memory BARs: above q35's ECAM window
/// (0xb0000000, 256 MiB) and below the IOAPIC at 0xfec00000.
const BAR_WINDOW_START: u64 = 0xc000_0000;
const BAR_WINDOW_END: u64 = 0xfec0_0000;
/// Where our page tables end: device registers beyond are out of reach.
const MAPPED_END: u64 = 1 << 32;

const COMMAND_STATUS: u8 = 0x04;
const STATUS_HAS_CAPABILITIES: u32 = 1 << 20;
const CAPABILITIES_POINTER: u8 = 0x34;
const INTERRUPT_LINE_PIN: u8 = 0x3c;
const VENDOR_CAPABILITY: u32 = 0x09;
/// virtio's capability type for the ISR status byte.
const VIRTIO_ISR_CAPABILITY: u32 = 3;
/// More capabilities than fit in configuration space means a loop.
const MAX_CAPABILITIES: usize = 48;

/// Configuration mechanism #1.
pub struct PortCam;

fn address(df: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000
        | u32::from(df.bus) << 16
        | u32::from(df.device) << 11
        | u32::from(df.function) << 8
        | u32::from(offset & 0xfc)
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        // SAFETY: the config address/data ports only access PCI config space.
        unsafe {
            outl(0xcf8, address(df, offset));
            inl(0xcfc)
        }
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        // SAFETY: as for read_word; config writes only reprogram devices.
        unsafe {
            outl(0xcf8, address(df, offset));
            outl(0xcfc, data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// Whether a host bridge answers at 00:00.0 (a PC), or nothing does (microvm).
pub fn host_bridge_present() -> bool {
    let df = DeviceFunction {
        bus: 0,
        device: 0,
        function: 0,
    };
    PortCam.read_word(df, 0) & 0xffff != 0xffff
}

/// Assigns any unassigned memory BARs of `df` from `next` upward.
fn assign_bars(root: &mut PciRoot<PortCam>, df: DeviceFunction, next: &mut u64) -> bool {
    let Ok(bars) = root.bars(df) else {
        return false;
    };
    for (index, bar) in bars.iter().enumerate() {
        let Some(BarInfo::Memory { address, size, .. }) = bar else {
            continue;
        };
        if *address != 0 || *size == 0 {
            continue;
        }
        let start = next.next_multiple_of(*size);
        let end = start + size;
        if end > BAR_WINDOW_END {
            return false;
        }
        // BarInfo::takes_two_entries tells 64-bit BARs apart.
        let index = index as u8;
        if bar.as_ref().is_some_and(BarInfo::takes_two_entries) {
            root.set_bar_64(df, index, start);
        } else {
            root.set_bar_32(df, index, start as u32);
        }
        *next = end;
    }
    true
}

/// The address of a virtio device's ISR status byte: its capability names
/// a BAR and an offset.
fn isr_address(root: &mut PciRoot<PortCam>, df: DeviceFunction) -> Option<usize> {
    let cam = PortCam;
    if cam.read_word(df, COMMAND_STATUS) & STATUS_HAS_CAPABILITIES == 0 {
        return None;
    }
    let mut at = (cam.read_word(df, CAPABILITIES_POINTER) & 0xfc) as u8;
    for _ in 0..MAX_CAPABILITIES {
        if at < 0x40 {
            return None;
        }
        let header = cam.read_word(df, at);
        if header & 0xff == VENDOR_CAPABILITY && header >> 24 == VIRTIO_ISR_CAPABILITY {
            let bar = (cam.read_word(df, at + 4) & 0xff) as usize;
            let offset = u64::from(cam.read_word(df, at + 8));
            let bars = root.bars(df).ok()?;
            let Some(BarInfo::Memory { address, size, .. }) = bars.get(bar)?.as_ref() else {
                return None;
            };
            let isr = address.checked_add(offset)?;
            return (offset < *size && isr < MAPPED_END).then_some(isr as usize);
        }
        at = ((header >> 8) & 0xfc) as u8;
    }
    None
}

/// Whether the function has an INTx pin at all.
fn has_interrupt_pin(df: DeviceFunction) -> bool {
    (PortCam.read_word(df, INTERRUPT_LINE_PIN) >> 8) & 0xff != 0
}

pub fn virtio_transports() -> Vec<SomeTransport<'static>> {
    let mut root = PciRoot::new(PortCam);
    let mut next = BAR_WINDOW_START;
    let mut found = Vec::new();
    let functions: Vec<_> = root.enumerate_bus(0).collect();
    for (df, info) in functions {
        if info.vendor_id != VIRTIO_VENDOR || !assign_bars(&mut root, df, &mut next) {
            continue;
        }
        root.set_command(df, Command::MEMORY_SPACE | Command::BUS_MASTER);
        let isr = isr_address(&mut root, df).filter(|_| has_interrupt_pin(df));
        if let Ok(transport) = PciTransport::new::<VirtioHal, _>(&mut root, df) {
            match isr {
                Some(isr) => interrupts::attach_pci_device(isr),
                None => irq::device_without_interrupt(),
            }
            found.push(SomeTransport::Pci(transport));
        }
    }
    found
}
