//! `BOOTX64.EFI` / `BOOTAA64.EFI`: the boot loader of a node image.
//!
//! It reads the GPT of the disk it was started from, chooses IMGA or IMGB
//! as EVE's GRUB does (`gptab::ab`: highest priority that is successful or
//! has a try left; a try is spent and written to the disk before an
//! untested image boots), says on the console which partition and why,
//! reads `kernel`, `initrd` and `cmdline` from the chosen partition's FAT
//! file system and starts the kernel through its EFI stub: `LoadImage`,
//! the command line as load options, the initramfs served through
//! `LINUX_EFI_INITRD_MEDIA_GUID`'s `LoadFile2`. Anything that fails is said
//! and the machine restarts after a pause, so a broken update that cannot
//! load has spent its try and the next boot falls back.
#![no_std]
#![no_main]

extern crate alloc;

mod disk;
mod gzip;
mod linux;

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use gptab::ab::{self, SlotState};
use gptab::{Gpt, types};
use uefi::prelude::*;
use uefi::println;

/// How long a failure stays on the console before the machine restarts.
const PAUSE_BEFORE_RESET: Duration = Duration::from_secs(10);

#[entry]
fn main() -> Status {
    println!("eve-loader {}", env!("CARGO_PKG_VERSION"));
    let error = match boot() {
        Ok(never) => match never {},
        Err(message) => message,
    };
    println!("eve-loader: {error}");
    println!(
        "eve-loader: restarting in {} s",
        PAUSE_BEFORE_RESET.as_secs()
    );
    boot::stall(PAUSE_BEFORE_RESET);
    runtime::reset(runtime::ResetType::COLD, Status::ABORTED, None)
}

/// What cannot happen: `boot` returns only errors.
pub(crate) enum Never {}

fn boot() -> Result<Never, String> {
    let mut disk = disk::BootDisk::of_this_image()?;
    let mut gpt = Gpt::read(&mut disk).map_err(|e| format!("reading the partition table: {e}"))?;
    let status = gpt.status();
    if !status.both_valid() {
        let copy = |s: gptab::CopyStatus| s.err().map_or(String::from("ok"), |e| format!("{e}"));
        println!(
            "eve-loader: partition table damaged (primary: {}, backup: {}); using the good copy",
            copy(status.primary),
            copy(status.backup)
        );
    }
    let choice = ab::choose(&mut gpt, types::EVE_IMAGE)
        .map_err(|e| format!("choosing IMGA or IMGB: {e}"))?;
    println!("eve-loader: {choice}");
    if choice.spent_try {
        // Before the kernel runs: if it never comes back to commit, the
        // next boot finds no try left and falls back.
        gpt.write(&mut disk)
            .map_err(|e| format!("writing the spent try: {e}"))?;
        println!(
            "eve-loader: {} has {} left",
            choice.partition().name,
            choice.after()
        );
    }
    let chosen = choice.partition();
    let state_now = gpt
        .partition(chosen.number)
        .map_or(chosen.state, |p| SlotState::of(p.attributes));
    let files = disk
        .open_partition(chosen.unique_guid)
        .map_err(|e| format!("{}: {e}", chosen.name))?;
    let image = linux::BootFiles::read(files).map_err(|e| format!("{}: {e}", chosen.name))?;
    let cmdline = format!(
        "{} eve.slot={} eve.slot_guid={} eve.slot_state={}",
        image.cmdline.trim(),
        chosen.name,
        chosen.unique_guid,
        state_now
    );
    println!(
        "eve-loader: {}: kernel {} KiB, initrd {} KiB, command line: {cmdline}",
        chosen.name,
        image.kernel.len() / 1024,
        image.initrd.len() / 1024
    );
    linux::start(&image.kernel, image.initrd, &cmdline).map_err(|e| format!("{}: {e}", chosen.name))
}
