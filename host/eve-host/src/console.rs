//! Guest consoles: every line a service prints goes to its own file and to
//! the host's log under the service's name, and the runner markers in it
//! (`@@ exit N`, the panic line) are kept so a crash is reported with its
//! status and message.

use std::{
    fs::File,
    io::{self, Read, Write},
    sync::{Arc, Mutex},
    thread::{self, JoinHandle},
};

use guest_abi::{Marker, parse_marker};

use crate::stdio::err_line;

/// The runtime's panic handler starts its line with this.
const PANIC_PREFIX: &str = "panic in ";

/// Longest line kept whole; a guest that prints more without a newline is
/// cut, so a runaway guest cannot grow host memory.
pub const MAX_LINE: usize = 4096;

/// What the host needs from a finished console.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleSummary {
    /// Whether the guest printed anything at all: if it did not, a VMM
    /// that ended with an error never got the guest going.
    pub guest_spoke: bool,
    /// The status of the last `@@ exit` marker.
    pub exit_marker: Option<i32>,
    /// The last panic line, without its `panic in ` prefix.
    pub panic: Option<String>,
    /// The last line the VMM printed about the VM (its error, if it died).
    pub last_vmm_line: Option<String>,
}

/// Where console lines go besides the per-service file.
pub trait HostLog: Send + Sync {
    /// A line the guest printed.
    fn console_line(&self, service: &str, line: &str);
    /// A line the VMM printed about the guest.
    fn vmm_line(&self, service: &str, line: &str);
    /// Something the host itself has to say about a service.
    fn note(&self, service: &str, message: &str);
    /// A log record the service sent over the bus, formatted.
    fn bus_record(&self, service: &str, record: &str);
}

/// The host log on standard error, one line per console line; lines that
/// cannot be written are dropped ([`crate::stdio`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrLog;

impl HostLog for StderrLog {
    fn console_line(&self, service: &str, line: &str) {
        err_line(format_args!("[{service}] {line}"));
    }

    fn vmm_line(&self, service: &str, line: &str) {
        err_line(format_args!("[{service}] vmm: {line}"));
    }

    fn note(&self, service: &str, message: &str) {
        err_line(format_args!("[{service}] host: {message}"));
    }

    fn bus_record(&self, service: &str, record: &str) {
        err_line(format_args!("[{service}] bus: {record}"));
    }
}

/// The `log` facade's output on standard error, for what the host's
/// libraries (the bus broker, the TPM mediator) report about themselves:
/// `[host] <target> <LEVEL>: <message>`.
#[derive(Debug, Clone, Copy)]
pub struct StderrLogger {
    pub level: log::LevelFilter,
}

impl StderrLogger {
    /// Makes this the process's `log` logger; fails if one is set already.
    pub fn install(&'static self) -> Result<(), log::SetLoggerError> {
        log::set_logger(self)?;
        log::set_max_level(self.level);
        Ok(())
    }
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            err_line(format_args!(
                "[host] {} {}: {}",
                record.target(),
                record.level(),
                record.args()
            ));
        }
    }

    fn flush(&self) {}
}

/// Splits a byte stream into lines: `\n` ends a line, `\r` is dropped,
/// invalid UTF-8 is replaced, lines longer than [`MAX_LINE`] are cut.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes, calling `line` for each completed line.
    pub fn feed(&mut self, bytes: &[u8], mut line: impl FnMut(&str)) {
        for &b in bytes {
            match b {
                b'\n' => self.emit(&mut line),
                b'\r' => {}
                _ => {
                    self.partial.push(b);
                    if self.partial.len() >= MAX_LINE {
                        self.emit(&mut line);
                    }
                }
            }
        }
    }

    /// Emits what is left after the stream ended.
    pub fn finish(&mut self, mut line: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            self.emit(&mut line);
        }
    }

    fn emit(&mut self, line: &mut impl FnMut(&str)) {
        line(&String::from_utf8_lossy(&self.partial));
        self.partial.clear();
    }
}

/// Updates `summary` with one guest console line.
pub fn note_guest_line(summary: &mut ConsoleSummary, line: &str) {
    summary.guest_spoke = true;
    if let Some(Marker::Exit(status)) = parse_marker(line) {
        summary.exit_marker = Some(status);
    } else if let Some(panic) = line.strip_prefix(PANIC_PREFIX) {
        summary.panic = Some(panic.to_string());
    }
}

/// The threads copying one run's console and VMM messages.
#[derive(Debug)]
pub struct Capture {
    console: Option<JoinHandle<ConsoleSummary>>,
    diagnostics: Option<JoinHandle<Option<String>>>,
}

impl Capture {
    /// Starts copying `console` and `diagnostics` (either may be absent)
    /// into `file` and `log`.
    pub fn start(
        service: &str,
        console: Option<Box<dyn Read + Send>>,
        diagnostics: Option<Box<dyn Read + Send>>,
        file: File,
        log: Arc<dyn HostLog>,
    ) -> Capture {
        let file = Arc::new(Mutex::new(file));
        let console = console.map(|stream| {
            let (service, file, log) = (service.to_string(), file.clone(), log.clone());
            thread::spawn(move || {
                let mut summary = ConsoleSummary::default();
                copy_lines(stream, |line| {
                    write_line(&file, "", line);
                    log.console_line(&service, line);
                    note_guest_line(&mut summary, line);
                });
                summary
            })
        });
        let diagnostics = diagnostics.map(|stream| {
            let service = service.to_string();
            thread::spawn(move || {
                let mut last = None;
                copy_lines(stream, |line| {
                    write_line(&file, "[vmm] ", line);
                    log.vmm_line(&service, line);
                    if !line.trim().is_empty() {
                        last = Some(line.to_string());
                    }
                });
                last
            })
        });
        Capture {
            console,
            diagnostics,
        }
    }

    /// Waits for both streams to end (the VMM has exited, so they do) and
    /// returns what they said.
    pub fn finish(self) -> ConsoleSummary {
        let mut summary = self.console.and_then(|t| t.join().ok()).unwrap_or_default();
        summary.last_vmm_line = self.diagnostics.and_then(|t| t.join().ok()).flatten();
        summary
    }
}

fn copy_lines(mut stream: Box<dyn Read + Send>, mut line: impl FnMut(&str)) {
    let mut splitter = LineSplitter::default();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => splitter.feed(&buf[..n], &mut line),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    splitter.finish(&mut line);
}

/// Appends a line to the console file. A failing log disk must not stop
/// the console from being drained (the guest would block on a full pipe),
/// so write errors are dropped here; the host log still has the line.
fn write_line(file: &Mutex<File>, prefix: &str, line: &str) {
    let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(file, "{prefix}{line}");
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    impl HostLog for Collect {
        fn console_line(&self, service: &str, line: &str) {
            self.0.lock().unwrap().push(format!("{service}| {line}"));
        }
        fn vmm_line(&self, service: &str, line: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{service} vmm| {line}"));
        }
        fn note(&self, service: &str, message: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{service} host| {message}"));
        }
        fn bus_record(&self, service: &str, record: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{service} bus| {record}"));
        }
    }

    fn lines_of(chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, |l| out.push(l.to_string()));
        }
        splitter.finish(|l| out.push(l.to_string()));
        out
    }

    #[test]
    fn lines_split_across_chunks_without_carriage_returns() {
        assert_eq!(
            lines_of(&[b"one\r\ntw", b"o\n\nthree"]),
            ["one", "two", "", "three"]
        );
        assert_eq!(lines_of(&[b"bad \xff byte\n"]), ["bad \u{fffd} byte"]);
        let long = vec![b'x'; MAX_LINE + 10];
        let cut = lines_of(&[&long]);
        assert_eq!(cut.len(), 2);
        assert_eq!(cut[0].len(), MAX_LINE);
    }

    #[test]
    fn markers_and_panics_are_noted() {
        let mut summary = ConsoleSummary::default();
        for line in [
            "[0.001] selftest INFO: @@ exit 0 is text here",
            "panic in selftest: selftest asked to panic at src/main.rs:22:21",
            "@@ exit 101",
        ] {
            note_guest_line(&mut summary, line);
        }
        assert!(summary.guest_spoke);
        assert_eq!(summary.exit_marker, Some(101));
        assert_eq!(
            summary.panic.as_deref(),
            Some("selftest: selftest asked to panic at src/main.rs:22:21")
        );
    }

    #[test]
    fn a_vmm_that_never_got_the_guest_going_is_told_by_a_silent_console() {
        let dir = tempfile::tempdir().unwrap();
        let capture = Capture::start(
            "a",
            Some(Box::new(Cursor::new(Vec::new()))),
            Some(Box::new(Cursor::new(
                b"qemu-system-x86_64: -smp 9999: Invalid SMP CPUs 9999\n".to_vec(),
            ))),
            File::create(dir.path().join("a.console")).unwrap(),
            Arc::new(Collect::default()),
        );
        let summary = capture.finish();
        assert!(!summary.guest_spoke);
        assert_eq!(
            summary.last_vmm_line.as_deref(),
            Some("qemu-system-x86_64: -smp 9999: Invalid SMP CPUs 9999")
        );
    }

    #[test]
    fn capture_fills_the_file_and_the_host_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.console");
        let log = Arc::new(Collect::default());
        let capture = Capture::start(
            "a",
            Some(Box::new(Cursor::new(b"hello\r\n@@ exit 3\n".to_vec()))),
            Some(Box::new(Cursor::new(b"qemu: warning\n\n".to_vec()))),
            File::create(&path).unwrap(),
            log.clone(),
        );
        let summary = capture.finish();
        assert!(summary.guest_spoke);
        assert_eq!(summary.exit_marker, Some(3));
        assert_eq!(summary.panic, None);
        assert_eq!(summary.last_vmm_line.as_deref(), Some("qemu: warning"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("hello\n@@ exit 3\n"), "{text}");
        assert!(text.contains("[vmm] qemu: warning\n"), "{text}");
        let logged = log.0.lock().unwrap().clone();
        assert!(logged.contains(&"a| hello".to_string()), "{logged:?}");
        assert!(logged.contains(&"a vmm| qemu: warning".to_string()));
    }
}
