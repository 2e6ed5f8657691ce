//! The host's standard output and error, which can close under it. Run as
//! `eve-host run ... | tee log`, a Ctrl-C kills `tee` too; under xtask the
//! reader is xtask's thread. Rust ignores SIGPIPE, so writes then fail
//! with EPIPE, and `println!` panics on that: with `panic = "abort"` the
//! host would die on the spot and leave every VM and the swtpm running.
//!
//! So the host writes its status lines and its log only through here: a
//! line that cannot be written is dropped, the first loss on a stream is
//! said once on the other one, and the node goes on (and stops cleanly
//! when asked). The status file and the per-service logs under the state
//! directory still have everything.

use std::{
    fmt,
    io::{self, Write},
    sync::atomic::{AtomicBool, Ordering},
};

/// Set once a write to standard output has failed.
static OUT_LOST: AtomicBool = AtomicBool::new(false);
/// Set once a write to standard error has failed.
static ERR_LOST: AtomicBool = AtomicBool::new(false);

/// One line on standard output: the node's status lines.
pub fn out_line(line: fmt::Arguments<'_>) {
    if let Some(e) = write_lossy(&mut io::stdout().lock(), &OUT_LOST, line) {
        write_lossy(
            &mut io::stderr().lock(),
            &ERR_LOST,
            format_args!(
                "eve-host: standard output is gone ({e}); status lines go only to the status file"
            ),
        );
    }
}

/// One line on standard error: the host's log.
pub fn err_line(line: fmt::Arguments<'_>) {
    if let Some(e) = write_lossy(&mut io::stderr().lock(), &ERR_LOST, line) {
        write_lossy(
            &mut io::stdout().lock(),
            &OUT_LOST,
            format_args!(
                "eve-host: standard error is gone ({e}); the host log goes only to the state directory's logs"
            ),
        );
    }
}

/// Writes `line` and a newline to `sink` and flushes it. A failure is
/// dropped; the first one on `lost`'s stream is returned, so that the
/// caller can say it once.
pub fn write_lossy(
    sink: &mut impl Write,
    lost: &AtomicBool,
    line: fmt::Arguments<'_>,
) -> Option<io::Error> {
    let written = writeln!(sink, "{line}").and_then(|()| sink.flush());
    match written {
        Ok(()) => None,
        Err(e) => (!lost.swap(true, Ordering::Relaxed)).then_some(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_loses_lines_without_panicking_and_is_reported_once() {
        let (reader, mut writer) = io::pipe().unwrap();
        let lost = AtomicBool::new(false);
        assert!(write_lossy(&mut writer, &lost, format_args!("before")).is_none());
        drop(reader);
        let first = write_lossy(&mut writer, &lost, format_args!("after {}", 1));
        assert_eq!(
            first.map(|e| e.kind()),
            Some(io::ErrorKind::BrokenPipe),
            "the first loss is reported"
        );
        assert!(write_lossy(&mut writer, &lost, format_args!("after 2")).is_none());
        assert!(lost.load(Ordering::Relaxed));
    }
}
