//! The `partitions` target: the base OS partitions IMGA and IMGB of the
//! disk the node booted from (see `hostops::partitions` for the
//! operations).
//!
//! The disk is what `eve-host run --disk FILE|DEVICE` names; which
//! partition booted is what the loader put on the kernel command line
//! (`eve.slot=IMGA`, read by the init and passed on as `--booted-slot`).
//! A host without a disk answers every call `NoDisk`; without a booted
//! slot, only `status` works.
//!
//! Writes are ordered so that a host killed at any point leaves the old
//! partition booting: the target partition is made `unused` in the table
//! first (both table copies, through `gptab`'s backup-then-primary
//! write), then its data is written and synced, and only `try-once`, a
//! later call that finds the written image's `eve-release` readable,
//! makes it bootable.

mod disk;

use std::error::Error;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread;
use std::time::Duration;

use blobstore::{BlobState as StoreState, Digest};
use blockdev::BLOCK_SIZE;
use eve_broker::{RpcError, RpcHandler};
use gptab::ab::{self, SlotState};
use gptab::{FileDisk, Gpt, Partition};
use hostops::partitions::{
    Commit, Fallback, PartitionError, PartitionErrorCode as Code, PartitionInfo, PartitionRef,
    Partitions, PartitionsStatus, Status, TryOnce, Write, WriteRequest,
};
use hostops::{Operation, Target, TargetSpec};

use super::content::Content;
use super::{HostTarget, Refused, TargetContext, serve};
use disk::Window;

/// EVE's names of the two base OS partitions.
pub const SLOTS: [&str; 2] = ["IMGA", "IMGB"];

/// The disk the node booted from and which of its partitions booted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootDisk {
    /// The disk image file or block device.
    pub path: PathBuf,
    /// `IMGA` or `IMGB`, when the loader said.
    pub booted: Option<String>,
    /// Its logical block size: a block device's own when None, and 512
    /// for an image file (`gptab::logical_block_size`).
    pub block_size: Option<usize>,
}

/// The partitions target.
pub struct PartitionsTarget {
    content: Arc<Content>,
    disk: Option<BootDisk>,
    /// One operation at a time.
    busy: Mutex<()>,
    /// Set while a write holds `busy`: a write takes minutes, and a call
    /// meanwhile is answered `Busy` rather than kept waiting. Any other
    /// operation is short and a call waits for it: baseosmgr and nodeagent
    /// each ask for `status` every few seconds, and on a real disk under
    /// emulation one takes long enough that answering `Busy` left
    /// baseosmgr without an answer for minutes on end, a trial boot
    /// uncommitted.
    writing: AtomicBool,
}

/// [`PartitionsTarget::writing`] set for as long as it lives.
struct Writing<'a>(&'a AtomicBool);

impl<'a> Writing<'a> {
    fn new(flag: &'a AtomicBool) -> Writing<'a> {
        flag.store(true, Ordering::SeqCst);
        Writing(flag)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// How often a call waiting for a short operation looks again.
const WAIT_STEP: Duration = Duration::from_millis(10);

/// Opens the target on the context's disk (none: every call says so).
pub fn open(
    context: &TargetContext<'_>,
) -> Result<Arc<dyn HostTarget>, Box<dyn Error + Send + Sync>> {
    let content = Content::shared(context.state_dir, context.content)?;
    Ok(Arc::new(PartitionsTarget::new(
        content,
        context.disk.cloned(),
    )))
}

type Answer<T> = Result<T, Refused<PartitionError>>;

fn failed(code: Code, subject: &str) -> Refused<PartitionError> {
    Refused::Failed(PartitionError::new(code, subject))
}

fn storage(subject: &str, detail: impl std::fmt::Display) -> Refused<PartitionError> {
    Refused::Failed(PartitionError::with_detail(
        Code::Storage,
        subject,
        detail.to_string(),
    ))
}

fn transition(subject: &str, e: ab::TransitionError) -> Refused<PartitionError> {
    Refused::Failed(PartitionError::with_detail(
        Code::BadTransition,
        subject,
        e.to_string(),
    ))
}

/// The disk opened and its table read, with both image partitions.
struct Opened {
    file: File,
    block_size: usize,
    gpt: Gpt,
    slots: [Partition; 2],
    booted: Option<usize>,
}

impl Opened {
    /// Bytes of partition `i`.
    fn size(&self, i: usize) -> u64 {
        self.slots[i]
            .blocks()
            .saturating_mul(self.block_size as u64)
    }

    /// Byte offset of partition `i` (a table `Gpt::read` accepted ends
    /// inside the disk, so this cannot overflow).
    fn start(&self, i: usize) -> u64 {
        self.slots[i]
            .first_lba
            .saturating_mul(self.block_size as u64)
    }

    fn release(&self, i: usize) -> Option<String> {
        disk::release(Window {
            file: &self.file,
            start: self.start(i),
            blocks: self.size(i) / BLOCK_SIZE as u64,
        })
    }

    fn info(&self, i: usize) -> PartitionInfo {
        let p = &self.slots[i];
        PartitionInfo {
            label: p.name.clone(),
            state: SlotState::of(p.attributes).to_string(),
            version: self.release(i).unwrap_or_default(),
            size_bytes: self.size(i),
            booted: self.booted == Some(i),
        }
    }

    fn status(&self) -> PartitionsStatus {
        PartitionsStatus {
            partitions: (0..2).map(|i| self.info(i)).collect(),
        }
    }

    /// The booted partition's index, or `BootUnknown`.
    fn booted(&self) -> Answer<usize> {
        self.booted.ok_or_else(|| failed(Code::BootUnknown, ""))
    }

    /// Writes the table (backup copy, then primary) and reads it back.
    fn write_table(&mut self) -> Answer<()> {
        let mut disk = FileDisk::new(&self.file, self.block_size).map_err(|e| storage("GPT", e))?;
        self.gpt.write(&mut disk).map_err(|e| storage("GPT", e))?;
        self.slots = slots(&self.gpt).map_err(Refused::Failed)?;
        Ok(())
    }

    fn set_state(&mut self, i: usize, state: SlotState) -> Answer<()> {
        let p = self.slots[i].clone();
        ab::set_state(&mut self.gpt, &p.name, p.type_guid, state)
            .map_err(|e| transition(&p.name, e))?;
        self.write_table()
    }
}

fn slots(gpt: &Gpt) -> Result<[Partition; 2], PartitionError> {
    let find = |name: &str| {
        gpt.partition_named(name)
            .ok_or_else(|| PartitionError::new(Code::NoAbPartitions, name))
    };
    let (a, b) = (find(SLOTS[0])?, find(SLOTS[1])?);
    if a.type_guid != b.type_guid {
        return Err(PartitionError::with_detail(
            Code::NoAbPartitions,
            "IMGB",
            String::from("IMGA and IMGB are of different types"),
        ));
    }
    Ok([a, b])
}

impl PartitionsTarget {
    /// The target over `disk`'s image partitions, writing images from
    /// `content`'s verified blobs.
    pub fn new(content: Arc<Content>, disk: Option<BootDisk>) -> PartitionsTarget {
        PartitionsTarget {
            content,
            disk,
            busy: Mutex::new(()),
            writing: AtomicBool::new(false),
        }
    }

    fn open_disk(&self) -> Answer<Opened> {
        let boot = self.disk.as_ref().ok_or_else(|| failed(Code::NoDisk, ""))?;
        let subject = boot.path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&boot.path)
            .map_err(|e| storage(&subject, e))?;
        let block_size = match boot.block_size {
            Some(size) => size,
            None => gptab::logical_block_size(&file).map_err(|e| storage(&subject, e))?,
        };
        let mut disk = FileDisk::new(&file, block_size).map_err(|e| storage(&subject, e))?;
        let gpt = Gpt::read(&mut disk).map_err(|e| {
            Refused::Failed(PartitionError::with_detail(
                Code::NoAbPartitions,
                &subject,
                e.to_string(),
            ))
        })?;
        let slots = slots(&gpt).map_err(Refused::Failed)?;
        let booted = boot
            .booted
            .as_deref()
            .and_then(|name| slots.iter().position(|p| p.name == name));
        Ok(Opened {
            file,
            block_size,
            gpt,
            slots,
            booted,
        })
    }

    /// Takes `busy`: waits for a short operation to finish, answers
    /// `Busy` while a write is under way.
    fn hold(&self) -> Answer<MutexGuard<'_, ()>> {
        loop {
            if self.writing.load(Ordering::SeqCst) {
                return Err(Refused::Busy);
            }
            match self.busy.try_lock() {
                Ok(guard) => return Ok(guard),
                // An operation that panicked left the disk as a killed host
                // would, which every operation is ordered to survive.
                Err(TryLockError::Poisoned(poisoned)) => return Ok(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => thread::sleep(WAIT_STEP),
            }
        }
    }

    /// Runs `op` on the opened disk, one operation at a time.
    fn with_disk<T>(&self, op: impl FnOnce(&mut Opened) -> Answer<T>) -> Answer<T> {
        let _guard = self.hold()?;
        let mut opened = self.open_disk()?;
        op(&mut opened)
    }

    /// [`Self::with_disk`] for a write: calls meanwhile are answered
    /// `Busy`.
    fn writing_disk<T>(&self, op: impl FnOnce(&mut Opened) -> Answer<T>) -> Answer<T> {
        let _guard = self.hold()?;
        let _writing = Writing::new(&self.writing);
        let mut opened = self.open_disk()?;
        op(&mut opened)
    }

    /// The verified blob `digest` names, opened.
    fn image(&self, digest: &str) -> Answer<(File, String)> {
        let digest: Digest = digest
            .parse()
            .map_err(|e: blobstore::BadDigest| Refused::BadRequest(e.to_string()))?;
        let hex = digest.hex();
        let mut store = self.content.store();
        let manager = store.manager();
        let path = manager
            .status(digest)
            .filter(|i| i.state == StoreState::Verified)
            .and_then(|_| manager.verified_path(digest))
            .ok_or_else(|| failed(Code::NotVerified, &hex))?;
        let file = File::open(&path).map_err(|e| storage(&hex, e))?;
        Ok((file, hex))
    }

    fn write(&self, request: &WriteRequest, cut_after: Option<u64>) -> Answer<PartitionInfo> {
        let (image, hex) = self.image(&request.digest)?;
        self.writing_disk(|d| {
            let booted = d.booted()?;
            let other = 1 - booted;
            let label = d.slots[other].name.clone();
            let len = gptab::byte_len(&image).map_err(|e| storage(&hex, e))?;
            let available = d.size(other);
            if len > available {
                return Err(Refused::Failed(PartitionError {
                    needed: len,
                    available,
                    ..PartitionError::new(Code::TooLarge, &hex)
                }));
            }
            let found = disk::release(Window {
                file: &image,
                start: 0,
                blocks: len / BLOCK_SIZE as u64,
            });
            if found.as_deref() != Some(request.version.as_str()) {
                return Err(Refused::Failed(PartitionError::with_detail(
                    Code::VersionMismatch,
                    &hex,
                    found.unwrap_or_default(),
                )));
            }
            // Only beside an active booted partition is the other one
            // not needed to boot: an update on trial falls back to it.
            let current = SlotState::of(d.slots[booted].attributes);
            if current != SlotState::Active {
                return Err(Refused::Failed(PartitionError::with_detail(
                    Code::BadTransition,
                    &label,
                    format!("the booted partition is {current}, not active: commit it first"),
                )));
            }
            if SlotState::of(d.slots[other].attributes) != SlotState::Unused {
                d.set_state(other, SlotState::Unused)?;
            }
            let offset = d.start(other);
            disk::copy(&image, &d.file, offset, cut_after).map_err(|e| storage(&label, e))?;
            log::info!("partitions: wrote {hex} ({len} bytes) into {label}");
            Ok(d.info(other))
        })
    }

    fn try_once(&self, request: &PartitionRef) -> Answer<PartitionsStatus> {
        self.with_disk(|d| {
            let booted = d.booted()?;
            let other = 1 - booted;
            if request.label == d.slots[booted].name {
                return Err(failed(Code::Booted, &request.label));
            }
            if request.label != d.slots[other].name {
                return Err(Refused::BadRequest(format!(
                    "no image partition {:?}",
                    request.label
                )));
            }
            d.release(other)
                .ok_or_else(|| failed(Code::NoImage, &request.label))?;
            d.set_state(other, SlotState::Updating)?;
            Ok(d.status())
        })
    }

    fn commit(&self) -> Answer<PartitionsStatus> {
        self.with_disk(|d| {
            let booted = d.booted()?;
            let (cur, oth) = (d.slots[booted].clone(), d.slots[1 - booted].clone());
            if SlotState::of(cur.attributes) != SlotState::Active {
                ab::commit(&mut d.gpt, &cur.name, &oth.name, cur.type_guid)
                    .map_err(|e| transition(&cur.name, e))?;
                d.write_table()?;
            }
            Ok(d.status())
        })
    }

    fn fallback(&self) -> Answer<PartitionsStatus> {
        self.with_disk(|d| {
            let other = 1 - d.booted()?;
            let label = d.slots[other].name.clone();
            d.release(other)
                .ok_or_else(|| failed(Code::NoImage, &label))?;
            d.set_state(other, SlotState::Updating)?;
            Ok(d.status())
        })
    }
}

impl RpcHandler for PartitionsTarget {
    fn call(&self, caller: &str, operation: &str, request: &[u8]) -> Result<Vec<u8>, RpcError> {
        log::debug!("partitions: {operation} for {caller}");
        match operation {
            Status::NAME => serve::<Status>(request, |_| self.with_disk(|d| Ok(d.status()))),
            Write::NAME => serve::<Write>(request, |r| self.write(&r, None)),
            TryOnce::NAME => serve::<TryOnce>(request, |r| self.try_once(&r)),
            Commit::NAME => serve::<Commit>(request, |_| self.commit()),
            Fallback::NAME => serve::<Fallback>(request, |_| self.fallback()),
            other => Err(RpcError::BadRequest(format!(
                "partitions has no operation {other}"
            ))),
        }
    }
}

impl HostTarget for PartitionsTarget {
    fn spec(&self) -> &'static TargetSpec {
        &Partitions::SPEC
    }

    fn describe(&self) -> String {
        match &self.disk {
            Some(d) => format!(
                "{} (booted {})",
                d.path.display(),
                d.booted.as_deref().unwrap_or("unknown")
            ),
            None => String::from("no A/B disk"),
        }
    }
}

#[cfg(test)]
mod tests;
