//! The end of a host's log, for a failure's report: enough to see what a
//! service or a VMM said last, short enough to read in a test's output.
//! Included with `#[path]` by every scenario that keeps a host's log.

/// How many of the last lines a failure shows.
const LINES: usize = 200;

/// The last lines of `lines`, one per line.
pub fn tail<S: AsRef<str>>(lines: &[S]) -> String {
    lines[lines.len().saturating_sub(LINES)..]
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join("\n")
}
