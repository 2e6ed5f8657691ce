//! Starting Linux through its EFI stub, the way `systemd-boot` and GRUB's
//! `linuxefi` do on both x86_64 and arm64: the kernel image is loaded
//! with `LoadImage`, the command line goes in its load options (UCS-2),
//! and the initramfs is served by a `LoadFile2` protocol on a handle whose
//! device path is the vendor media node `LINUX_EFI_INITRD_MEDIA_GUID`,
//! which the stub (Linux 5.8 and later) looks for before it exits boot
//! services.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::c_void;

use uefi::boot::{self, LoadImageSource, ScopedProtocol};
use uefi::fs::FileSystem;
use uefi::proto::loaded_image::LoadedImage;
use uefi::proto::media::fs::SimpleFileSystem;
use uefi::{Guid, Status, cstr16, guid};
use uefi_raw::protocol::device_path::DevicePathProtocol;
use uefi_raw::protocol::media::LoadFile2Protocol;

use crate::{Never, gzip};

/// The largest kernel inflated (Debian's arm64 Image is about 32 MiB).
const MAX_KERNEL: usize = 256 << 20;

/// The vendor GUID of the initrd media device path (Linux's
/// `LINUX_EFI_INITRD_MEDIA_GUID`).
const INITRD_MEDIA: Guid = guid!("5568e427-68fc-4f3d-ac74-ca555231cc68");

/// What an IMG partition holds for the loader.
pub struct BootFiles {
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
    pub cmdline: String,
}

impl BootFiles {
    /// Reads `kernel` (inflated if gzipped), `initrd` and `cmdline` from
    /// the partition's root.
    pub fn read(fs: ScopedProtocol<SimpleFileSystem>) -> Result<BootFiles, String> {
        let mut fs = FileSystem::new(fs);
        let mut read = |name| fs.read(name).map_err(|e| format!("reading {name}: {e:?}"));
        let mut kernel = read(cstr16!("\\kernel"))?;
        if gzip::is_gzip(&kernel) {
            kernel = gzip::gunzip(&kernel, MAX_KERNEL).map_err(String::from)?;
        }
        let initrd = read(cstr16!("\\initrd"))?;
        let cmdline = String::from_utf8(read(cstr16!("\\cmdline"))?)
            .map_err(|_| String::from("cmdline is not UTF-8"))?;
        Ok(BootFiles {
            kernel,
            initrd,
            cmdline,
        })
    }
}

/// The device path the stub finds the initramfs by: one vendor media
/// node, then the end node.
#[repr(C, packed)]
struct InitrdDevicePath {
    vendor_type: u8,
    vendor_subtype: u8,
    vendor_length: [u8; 2],
    vendor_guid: [u8; 16],
    end_type: u8,
    end_subtype: u8,
    end_length: [u8; 2],
}

static INITRD_DEVICE_PATH: InitrdDevicePath = InitrdDevicePath {
    vendor_type: 0x04,    // media
    vendor_subtype: 0x03, // vendor-defined
    vendor_length: 20u16.to_le_bytes(),
    vendor_guid: INITRD_MEDIA.to_bytes(),
    end_type: 0x7F,
    end_subtype: 0xFF, // end of the entire path
    end_length: 4u16.to_le_bytes(),
};

/// `LoadFile2` over the initramfs bytes; the protocol must be the first
/// field, since firmware hands `load_file` a pointer to it.
#[repr(C)]
struct InitrdFile {
    protocol: LoadFile2Protocol,
    bytes: Vec<u8>,
}

/// `LoadFile2.LoadFile`: the size when the buffer is missing or small,
/// else the bytes.
unsafe extern "efiapi" fn load_initrd(
    this: *mut LoadFile2Protocol,
    _file_path: *const DevicePathProtocol,
    boot_policy: uefi_raw::Boolean,
    buffer_size: *mut usize,
    buffer: *mut c_void,
) -> uefi_raw::Status {
    if this.is_null() || buffer_size.is_null() || bool::from(boot_policy) {
        return uefi_raw::Status::INVALID_PARAMETER;
    }
    // SAFETY: `this` is the protocol we installed, the first field of a
    // leaked `InitrdFile` (repr(C)), so the cast pointer is valid for
    // reads for the rest of boot services.
    let file = unsafe { &*this.cast::<InitrdFile>() };
    let len = file.bytes.len();
    // SAFETY: the caller passes a valid pointer to the buffer's size.
    let size = unsafe { &mut *buffer_size };
    if buffer.is_null() || *size < len {
        *size = len;
        return uefi_raw::Status::BUFFER_TOO_SMALL;
    }
    // SAFETY: the caller's buffer holds at least `*size >= len` bytes and
    // is not our vector.
    unsafe { core::ptr::copy_nonoverlapping(file.bytes.as_ptr(), buffer.cast::<u8>(), len) };
    *size = len;
    uefi_raw::Status::SUCCESS
}

/// Publishes `initrd` where the kernel's EFI stub looks for it. The
/// bytes are leaked: the stub reads them after we have handed over.
fn install_initrd(initrd: Vec<u8>) -> Result<(), String> {
    let file: &'static InitrdFile = Box::leak(Box::new(InitrdFile {
        protocol: LoadFile2Protocol {
            load_file: load_initrd,
        },
        bytes: initrd,
    }));
    let path = core::ptr::from_ref(&INITRD_DEVICE_PATH).cast::<c_void>();
    // SAFETY: the GUIDs name the protocols whose interfaces we pass: a
    // device path in static memory, and a LoadFile2 interface leaked
    // above, both valid for as long as firmware may use them.
    unsafe {
        let handle = boot::install_protocol_interface(None, &DevicePathProtocol::GUID, path)
            .map_err(|e| format!("installing the initrd device path: {e}"))?;
        boot::install_protocol_interface(
            Some(handle),
            &LoadFile2Protocol::GUID,
            core::ptr::from_ref(&file.protocol).cast::<c_void>(),
        )
        .map_err(|e| format!("installing the initrd LoadFile2: {e}"))?;
    }
    Ok(())
}

/// Loads and starts the kernel; returns only if it could not be started
/// or came back.
pub fn start(kernel: &[u8], initrd: Vec<u8>, cmdline: &str) -> Result<Never, String> {
    install_initrd(initrd)?;
    let image = boot::load_image(
        boot::image_handle(),
        LoadImageSource::FromBuffer {
            buffer: kernel,
            file_path: None,
        },
    )
    .map_err(|e| format!("the firmware refused the kernel image: {e}"))?;
    // UCS-2 with a terminating NUL; leaked, as the kernel reads it.
    let options: &'static mut [u16] = cmdline
        .encode_utf16()
        .chain(core::iter::once(0))
        .collect::<Vec<u16>>()
        .leak();
    let bytes = u32::try_from(options.len() * 2).map_err(|_| "command line too long")?;
    {
        let mut loaded = boot::open_protocol_exclusive::<LoadedImage>(image)
            .map_err(|e| format!("the kernel image has no loaded-image protocol: {e}"))?;
        // SAFETY: the options are leaked, so they outlive the image.
        unsafe { loaded.set_load_options(options.as_ptr().cast::<u8>(), bytes) };
    }
    let status = match boot::start_image(image) {
        Ok(()) => Status::SUCCESS,
        Err(e) => e.status(),
    };
    Err(format!("the kernel returned ({status:?})"))
}
