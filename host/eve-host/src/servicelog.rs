//! Log records services send over the bus: each goes to the host log
//! under the service's name and is appended to `<logs>/<service>.log`, next
//! to the service's console file (`<service>.console`), so a service's own
//! account of what it did is kept per service like its console.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use eve_broker::{LogEntry, LogSink};

use crate::console::HostLog;

/// The broker's [`LogSink`] for a node.
pub struct ServiceLogs {
    dir: PathBuf,
    log: Arc<dyn HostLog>,
    /// Open files by service, so a busy service costs no open per record.
    files: Mutex<HashMap<String, File>>,
}

impl ServiceLogs {
    /// Records go to `log` and to `<dir>/<service>.log` (the directory
    /// exists: the node's state directory made it).
    pub fn new(dir: &Path, log: Arc<dyn HostLog>) -> ServiceLogs {
        ServiceLogs {
            dir: dir.to_path_buf(),
            log,
            files: Mutex::new(HashMap::new()),
        }
    }

    /// The file a service's records are appended to.
    pub fn path(&self, service: &str) -> PathBuf {
        self.dir.join(format!("{service}.log"))
    }

    /// Appends one line. A failing log disk must not stop the bus, so the
    /// error goes to the host log, which still has the record.
    fn append(&self, service: &str, line: &str) {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let written = match files.get_mut(service) {
            Some(file) => writeln!(file, "{line}"),
            None => OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(service))
                .and_then(|mut file| {
                    writeln!(file, "{line}")?;
                    files.insert(service.to_string(), file);
                    Ok(())
                }),
        };
        if let Err(e) = written {
            files.remove(service);
            self.log.note(
                service,
                &format!("writing {}: {e}", self.path(service).display()),
            );
        }
    }
}

impl LogSink for ServiceLogs {
    fn log(&self, entry: &LogEntry) {
        let line = format_record(entry);
        self.log.bus_record(&entry.service, &line);
        self.append(&entry.service, &line);
    }
}

/// `[<unix seconds>.<micros>] <LEVEL> <target>: <message>`, the guest
/// console's log format with the service's own clock. Control characters
/// in the message are escaped: a service must not be able to forge lines
/// of other services in the host log or its file.
pub fn format_record(entry: &LogEntry) -> String {
    let secs = entry.unix_ns / 1_000_000_000;
    let micros = entry.unix_ns % 1_000_000_000 / 1_000;
    let level = format!("{:?}", entry.level).to_uppercase();
    // The broker admits only targets without control characters.
    let mut line = format!("[{secs}.{micros:06}] {level} {}: ", entry.target);
    for c in entry.message.chars() {
        if c.is_control() {
            let _ = write!(line, "{}", c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use evebus::Level;

    use super::*;

    #[derive(Default)]
    struct Records(Mutex<Vec<String>>);

    impl HostLog for Records {
        fn console_line(&self, _: &str, _: &str) {}
        fn vmm_line(&self, _: &str, _: &str) {}
        fn note(&self, service: &str, message: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{service} note| {message}"));
        }
        fn bus_record(&self, service: &str, record: &str) {
            self.0.lock().unwrap().push(format!("{service}| {record}"));
        }
    }

    fn entry(service: &str, message: &str) -> LogEntry {
        LogEntry {
            service: service.into(),
            level: Level::Warn,
            unix_ns: 1_700_000_000_123_456_789,
            target: "agent::onboard".into(),
            message: message.into(),
        }
    }

    #[test]
    fn records_reach_the_host_log_and_the_service_file() {
        let dir = tempfile::tempdir().unwrap();
        let records = Arc::new(Records::default());
        let logs = ServiceLogs::new(dir.path(), records.clone());
        logs.log(&entry("zedagent", "registered"));
        logs.log(&entry("diag", "uplink up"));
        logs.log(&entry("zedagent", "config fetched"));
        let line = "[1700000000.123456] WARN agent::onboard: registered";
        assert_eq!(records.0.lock().unwrap()[0], format!("zedagent| {line}"));
        let text = std::fs::read_to_string(dir.path().join("zedagent.log")).unwrap();
        assert_eq!(
            text,
            format!("{line}\n[1700000000.123456] WARN agent::onboard: config fetched\n")
        );
        let diag = std::fs::read_to_string(logs.path("diag")).unwrap();
        assert!(diag.ends_with("uplink up\n"), "{diag}");
    }

    #[test]
    fn a_service_cannot_forge_lines() {
        let line = format_record(&entry("a", "one\n[b] two\r\u{1b}[2J"));
        assert_eq!(
            line,
            "[1700000000.123456] WARN agent::onboard: one\\n[b] two\\r\\u{1b}[2J"
        );
    }

    #[test]
    fn a_file_that_cannot_be_written_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let records = Arc::new(Records::default());
        let logs = ServiceLogs::new(&dir.path().join("missing"), records.clone());
        logs.log(&entry("a", "hello"));
        let seen = records.0.lock().unwrap().clone();
        assert!(seen[0].ends_with("hello"), "{seen:?}");
        assert!(seen[1].starts_with("a note| writing "), "{seen:?}");
    }
}
