//! The host's log as the QEMU scenarios keep it: each service's console
//! lines, VMM lines, host notes and bus records, tagged with the service,
//! to show when something does not come up. Included with `#[path]` by the
//! scenarios that run the host's node code in their own process.

use std::sync::Mutex;

use eve_host::console::HostLog;

#[derive(Default)]
pub struct Lines(Mutex<Vec<String>>);

impl Lines {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    /// Every line so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl HostLog for Lines {
    fn console_line(&self, service: &str, line: &str) {
        self.push(format!("[{service}] {line}"));
    }
    fn vmm_line(&self, service: &str, line: &str) {
        self.push(format!("[{service} vmm] {line}"));
    }
    fn note(&self, service: &str, message: &str) {
        self.push(format!("[{service} host] {message}"));
    }
    fn bus_record(&self, service: &str, record: &str) {
        self.push(format!("[{service} bus] {record}"));
    }
}
