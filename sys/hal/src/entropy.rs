//! Entropy: the CPU's random number instruction where it has one
//! (RDSEED/RDRAND, RNDR), a virtio-rng device otherwise. These are raw
//! sources; the runtime feeds them into a CSPRNG for keys and TLS.

use spin::Mutex;
use virtio_drivers::{
    device::rng::VirtIORng,
    transport::{DeviceType, SomeTransport},
};

use crate::{arch, virtio::VirtioHal};

static VIRTIO_RNG: Mutex<Option<VirtIORng<VirtioHal, SomeTransport<'static>>>> = Mutex::new(None);

/// Where entropy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The CPU's own instruction (RDSEED/RDRAND or RNDR).
    Cpu,
    /// A virtio-rng device.
    Virtio,
}

/// Why no entropy could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntropyError {
    /// Neither a CPU instruction nor a virtio-rng device is available.
    NoSource,
    /// The source stopped answering.
    SourceFailed,
}

impl core::fmt::Display for EntropyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            EntropyError::NoSource => "no entropy source (no RDRAND/RNDR, no virtio-rng)",
            EntropyError::SourceFailed => "entropy source failed",
        })
    }
}

/// Hands a virtio-rng transport to the entropy layer.
pub fn attach_virtio(transport: SomeTransport<'static>) -> Result<(), EntropyError> {
    let rng = VirtIORng::new(transport).map_err(|_| EntropyError::SourceFailed)?;
    *VIRTIO_RNG.lock() = Some(rng);
    Ok(())
}

/// Makes sure some source is usable: the CPU's instruction, or else a
/// virtio-rng device (discovered and attached here if it was not yet).
pub fn ensure_source() -> Result<Source, EntropyError> {
    if cpu_source_present() {
        return Ok(Source::Cpu);
    }
    if VIRTIO_RNG.lock().is_some() {
        return Ok(Source::Virtio);
    }
    crate::virtio::discover(crate::startup::boot_info());
    let transport = crate::virtio::take(DeviceType::EntropySource).ok_or(EntropyError::NoSource)?;
    attach_virtio(transport)?;
    Ok(Source::Virtio)
}

/// Whether the CPU has a usable random instruction.
pub fn cpu_source_present() -> bool {
    arch::hw_random().is_some()
}

/// Fills `buf` with entropy, attaching a discovered virtio-rng first if the
/// CPU has no random instruction. `prefer_virtio` skips the CPU
/// instruction when a virtio-rng is attached (so both paths can be
/// exercised).
pub fn fill(buf: &mut [u8], prefer_virtio: bool) -> Result<Source, EntropyError> {
    ensure_source()?;
    let mut rng = VIRTIO_RNG.lock();
    if let Some(dev) = rng
        .as_mut()
        .filter(|_| prefer_virtio || !cpu_source_present())
    {
        let mut filled = 0;
        // A device may return fewer bytes than asked; bound the retries.
        for _ in 0..buf.len() + 16 {
            if filled == buf.len() {
                return Ok(Source::Virtio);
            }
            let n = dev
                .request_entropy(&mut buf[filled..])
                .map_err(|_| EntropyError::SourceFailed)?;
            filled += n;
        }
        return Err(EntropyError::SourceFailed);
    }
    drop(rng);
    for chunk in buf.chunks_mut(8) {
        let word = arch::hw_random().ok_or(EntropyError::NoSource)?;
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    Ok(Source::Cpu)
}
