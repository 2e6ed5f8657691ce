//! The two ioctls: `BLKPG` with `BLKPG_RESIZE_PARTITION` on a whole disk,
//! `EXT4_IOC_RESIZE_FS` on a mounted ext4's directory.

use std::ffi::c_void;
use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::ioctl::{Opcode, Setter, ioctl, opcode};

/// `BLKPG`: `_IO(0x12, 105)`, its argument a `struct blkpg_ioctl_arg *`.
const BLKPG: Opcode = opcode::none(0x12, 105);
/// `BLKPG_RESIZE_PARTITION` in `blkpg_ioctl_arg.op`.
const BLKPG_RESIZE_PARTITION: i32 = 3;
/// `EXT4_IOC_RESIZE_FS`: `_IOW('f', 16, __u64)`, the new block count.
const EXT4_IOC_RESIZE_FS: Opcode = opcode::write::<u64>(b'f', 16);

/// `struct blkpg_partition` (`linux/blkpg.h`).
#[repr(C)]
struct BlkpgPartition {
    /// Bytes.
    start: i64,
    /// Bytes.
    length: i64,
    pno: i32,
    devname: [u8; 64],
    volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg` (`linux/blkpg.h`).
#[repr(C)]
struct BlkpgIoctlArg {
    op: i32,
    flags: i32,
    datalen: i32,
    data: *mut c_void,
}

/// Tells the kernel that partition `number` of the disk `disk` now spans
/// `length` bytes from `start` (which must be where it starts already).
pub fn resize_partition(
    disk: impl AsFd,
    number: u32,
    start: u64,
    length: u64,
) -> Result<(), Errno> {
    let mut partition = BlkpgPartition {
        start: i64::try_from(start).map_err(|_| Errno::INVAL)?,
        length: i64::try_from(length).map_err(|_| Errno::INVAL)?,
        pno: i32::try_from(number).map_err(|_| Errno::INVAL)?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: size_of::<BlkpgPartition>() as i32,
        data: (&raw mut partition).cast(),
    };
    // SAFETY: BLKPG takes a pointer to a `struct blkpg_ioctl_arg`, which
    // `BlkpgIoctlArg` is (`repr(C)`, the kernel's field types); its `data`
    // points to `partition`, a `struct blkpg_partition` of `datalen`
    // bytes, alive and unaliased for the whole call.
    unsafe { ioctl(disk, Setter::<BLKPG, BlkpgIoctlArg>::new(arg)) }
}

/// Grows the ext4 mounted on the directory `mounted` to `blocks` blocks.
pub fn resize_ext4(mounted: impl AsFd, blocks: u64) -> Result<(), Errno> {
    // SAFETY: EXT4_IOC_RESIZE_FS is `_IOW('f', 16, __u64)`: the kernel
    // reads one `u64` through the pointer `Setter` passes to its copy.
    unsafe { ioctl(mounted, Setter::<EXT4_IOC_RESIZE_FS, u64>::new(blocks)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opcodes_and_layouts_are_the_kernels() {
        assert_eq!(BLKPG, 0x1269);
        assert_eq!(EXT4_IOC_RESIZE_FS, 0x4008_6610);
        assert_eq!(size_of::<BlkpgPartition>(), 152);
        assert_eq!(size_of::<BlkpgIoctlArg>(), 24);
    }

    /// Without a disk: a regular file is no disk, `/proc` no ext4 (both
    /// ENOTTY; a file on an ext4 would answer EPERM to a caller without
    /// CAP_SYS_RESOURCE, so the test does not use one).
    #[test]
    fn a_regular_file_is_no_disk_and_proc_no_ext4() {
        let file = tempfile::tempfile().unwrap();
        assert_eq!(
            resize_partition(&file, 9, 1 << 20, 1 << 20),
            Err(Errno::NOTTY)
        );
        let proc = std::fs::File::open("/proc").unwrap();
        assert_eq!(resize_ext4(&proc, 4096), Err(Errno::NOTTY));
        assert_eq!(resize_partition(&file, 9, u64::MAX, 1), Err(Errno::INVAL));
    }
}
