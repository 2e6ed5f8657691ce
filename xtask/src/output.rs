//! xtask's standard output and error, which can close under it. Run as
//! `cargo xtask qemu | tee log`, a Ctrl-C kills `tee` as well; Rust
//! ignores SIGPIPE, so writes then fail with EPIPE and `println!` panics,
//! which with `panic = "abort"` would leave the host, its VMs, swtpm and
//! the controller running. What the node's path prints goes through here
//! instead: a line that cannot be written is dropped, the first loss on a
//! stream is said once on the other one, and the node is stopped as it
//! would have been (its host log and status file still have everything).

use std::{
    fmt,
    io::{self, Write},
    sync::atomic::AtomicBool,
};

use eve_host::stdio::write_lossy;

/// Set once a write to standard output has failed.
pub static STDOUT_LOST: AtomicBool = AtomicBool::new(false);
/// Set once a write to standard error has failed.
static STDERR_LOST: AtomicBool = AtomicBool::new(false);

/// One line on standard output.
pub fn say(line: fmt::Arguments<'_>) {
    line_to(&mut io::stdout().lock(), &STDOUT_LOST, line);
}

/// One line on standard error.
pub fn warn(line: fmt::Arguments<'_>) {
    if let Some(e) = write_lossy(&mut io::stderr().lock(), &STDERR_LOST, line) {
        write_lossy(
            &mut io::stdout().lock(),
            &STDOUT_LOST,
            format_args!("xtask: standard error is gone ({e}); nothing more is said there"),
        );
    }
}

/// One line on `sink`, standard output or what stands for it (`lost` is
/// its loss flag); a loss is said once on standard error.
pub fn line_to(sink: &mut impl Write, lost: &AtomicBool, line: fmt::Arguments<'_>) {
    if let Some(e) = write_lossy(sink, lost, line) {
        warn(format_args!(
            "xtask: standard output is gone ({e}); the node runs on until Ctrl-C or SIGTERM"
        ));
    }
}
